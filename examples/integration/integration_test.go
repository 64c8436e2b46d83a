package integration_test

import (
	"context"
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
	"github.com/hutchbox/hutch/sandbox/sandboxtest"
)

// busyboxRoot builds a minimal root filesystem in a temporary directory: a
// static busybox (Debian's busybox-static) with a link for each of its
// applets in /bin, the usual top-level directories, and a document root
// /www holding index.html and a CGI script. It is the image the tests start
// from: read-only, it stays as it is whatever a sandbox does.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb := os.Getenv("BUSYBOX")
	if bb == "" {
		bb = "/bin/busybox"
	}
	if f, err := elf.Open(bb); err != nil {
		t.Skipf("needs a static busybox at %s or $BUSYBOX (apt-get install busybox-static): %v", bb, err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				f.Close()
				t.Skipf("%s is dynamically linked; needs a static one (apt-get install busybox-static)", bb)
			}
		}
		f.Close()
	}
	list, err := exec.Command(bb, "--list").Output()
	require.NoError(t, err, "busybox --list")

	root := t.TempDir()
	// t.TempDir is 0700; the server runs as nobody and must walk in.
	require.NoError(t, os.Chmod(root, 0o755))
	for _, dir := range []string{"bin", "etc", "proc", "dev", "tmp", "root", "www/cgi-bin"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
	}
	require.NoError(t, os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	data, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755))
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			require.NoError(t, os.Symlink("busybox", filepath.Join(root, "bin", applet)))
		}
	}
	files := map[string]string{
		"etc/passwd":         "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":          "root:x:0:\nnogroup:x:65534:\n",
		"www/index.html":     "<h1>hello from busybox httpd</h1>\n",
		"www/cgi-bin/whoami": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"user=$(id -un) host=$(hostname) method=$REQUEST_METHOD\"\ncat\n",
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(body), 0o644))
	}
	require.NoError(t, os.Chmod(filepath.Join(root, "www/cgi-bin/whoami"), 0o755))
	return root
}

// startHTTPD starts busybox httpd in the foreground on port 8080 of a new
// sandbox and waits until it serves /.
func startHTTPD(t *testing.T, root string) *sandboxtest.Container {
	t.Helper()
	requireSandbox(t, root)
	return sandboxtest.Start(t, rootfs.Dir(root),
		[]string{"httpd", "-f", "-vv", "-p", "8080", "-h", "/www"},
		sandboxtest.WaitForPort(8080),
		sandboxtest.WaitForHTTP(8080, "/", http.StatusOK),
		sandboxtest.WithConfig(&sandbox.Config{Limits: sandbox.Limits{Memory: 128 << 20, Pids: 64}}))
}

var (
	probeOnce sync.Once
	probeErr  error
)

// requireSandbox skips the test, saying why, when this machine cannot start
// a long-lived sandbox, found by trying one.
func requireSandbox(t *testing.T, root string) {
	t.Helper()
	probeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sb, err := sandbox.New(ctx, rootfs.Dir(root), nil)
		if err != nil {
			probeErr = err
			return
		}
		probeErr = sb.Close()
	})
	if probeErr != nil {
		t.Skipf("this machine cannot start a sandbox: %v", probeErr)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestHTTPD(t *testing.T) {
	t.Parallel()
	root := busyboxRoot(t)
	c := startHTTPD(t, root)
	base := "http://" + c.Addr(8080) // 127.0.0.1:PORT on the host
	require.True(t, strings.HasPrefix(c.Addr(8080), "127.0.0.1:"))

	t.Run("serves the image's files", func(t *testing.T) {
		status, body := get(t, base+"/")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "<h1>hello from busybox httpd</h1>\n", body)

		status, _ = get(t, base+"/missing.html")
		assert.Equal(t, http.StatusNotFound, status)
	})

	t.Run("serves a file copied in", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "report.txt")
		require.NoError(t, os.WriteFile(src, []byte("built on the host\n"), 0o644))
		require.NoError(t, c.CopyIn(src, "/www/reports/report.txt"))
		status, body := get(t, base+"/reports/report.txt")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "built on the host\n", body)

		require.NoError(t, c.WriteFile("/www/data.json", []byte(`{"ok":true}`), 0o644))
		status, body = get(t, base+"/data.json")
		assert.Equal(t, http.StatusOK, status)
		assert.JSONEq(t, `{"ok":true}`, body)
	})

	t.Run("runs CGI", func(t *testing.T) {
		resp, err := http.Post(base+"/cgi-bin/whoami", "text/plain", strings.NewReader("ping"))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		user := "nobody"
		if os.Geteuid() != 0 {
			user = "root" // root of the sandbox's own user namespace
		}
		assert.Equal(t, "user="+user+" host=hutch method=POST\nping", string(body))
	})

	t.Run("exec", func(t *testing.T) {
		// A command run next to the server sees its files and its network.
		res := c.Exec("sh", "-c", "ls /www/reports && wget -qO- http://127.0.0.1:8080/data.json")
		require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		assert.Equal(t, "report.txt\n{\"ok\":true}", string(res.Stdout))

		// ... and its processes: only the sandbox's own.
		res = c.Exec("ps", "-o", "comm")
		require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		t.Logf("ps in the sandbox:\n%s", res.Stdout)
		assert.Contains(t, string(res.Stdout), "httpd")

		res = c.Exec("sh", "-c", "exit 3")
		assert.Equal(t, sandbox.NonZeroExit, res.Status)
		assert.Equal(t, 3, res.ExitCode)
	})

	t.Run("copies a file out", func(t *testing.T) {
		res := c.Exec("sh", "-c", "echo made inside > /tmp/out.txt")
		require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		dst := filepath.Join(t.TempDir(), "out.txt")
		require.NoError(t, c.CopyOut("/tmp/out.txt", dst))
		data, err := os.ReadFile(dst)
		require.NoError(t, err)
		assert.Equal(t, "made inside\n", string(data))
	})

	t.Run("logs", func(t *testing.T) {
		// httpd -vv logs each request and its status on stderr.
		assert.Eventually(t, func() bool { return strings.Contains(c.Logs(), "/reports/report.txt") },
			5*time.Second, 10*time.Millisecond, "logs: %s", c.Logs())
	})

	// What the sandbox wrote lives in its throwaway layer, not the image.
	_, err := os.Stat(filepath.Join(root, "www/data.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the image was written to")
}

// TestFreshContainerPerTest starts two servers from the same image at once:
// each has its own files, network and port.
func TestFreshContainerPerTest(t *testing.T) {
	t.Parallel()
	root := busyboxRoot(t)
	a, b := startHTTPD(t, root), startHTTPD(t, root)
	assert.NotEqual(t, a.Addr(8080), b.Addr(8080))

	require.NoError(t, a.WriteFile("/www/only-a.txt", []byte("a\n"), 0o644))
	status, body := get(t, "http://"+a.Addr(8080)+"/only-a.txt")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "a\n", body)
	status, _ = get(t, "http://"+b.Addr(8080)+"/only-a.txt")
	assert.Equal(t, http.StatusNotFound, status)

	// Stopping one server leaves the other serving.
	require.NoError(t, a.Close())
	_, err := http.Get("http://" + a.Addr(8080) + "/")
	assert.Error(t, err, "a closed sandbox still answers")
	status, _ = get(t, "http://"+b.Addr(8080)+"/")
	assert.Equal(t, http.StatusOK, status)
}
