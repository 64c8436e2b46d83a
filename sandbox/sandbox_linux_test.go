package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

func newSandbox(t *testing.T, img rootfs.Image, cfg *sandbox.Config) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := sandbox.New(ctx, img, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sb.Close()) })
	return sb
}

func TestSandboxExec(t *testing.T) {
	img, _ := busybox(t)
	sb := newSandbox(t, img, &sandbox.Config{Hostname: "svc", Env: []string{"A=1", "B=2"}})
	ctx := context.Background()

	// Commands share the root filesystem, the namespaces and the hostname.
	res, err := sb.Command("sh", "-c", "echo data > /tmp/shared; hostname; echo $A$B$C").Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, "svc\n12\n", string(res.Stdout))
	c := sb.Command("sh", "-c", "cat /tmp/shared; echo $A$B$C")
	c.Env = []string{"B=x", "C=3"}
	res, err = c.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, "data\n1x3\n", string(res.Stdout))

	// A command's verdicts, limits and accounting are its own.
	res, err = sb.Command("sh", "-c", "exit 7").Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, sandbox.NonZeroExit, res.Status)
	assert.Equal(t, 7, res.ExitCode)
	c = sb.Command("sleep", "10")
	c.Limits.WallTime = 100 * time.Millisecond
	res, err = c.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, sandbox.WallTimeLimit, res.Status)

	// A process started in the background sees later commands' work, and
	// its pid namespace is the sandbox's.
	bg, err := sb.Command("sh", "-c", "echo $$ > /tmp/bg.pid; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo seen").Start(ctx)
	require.NoError(t, err)
	res, err = sb.Command("sh", "-c", "while [ ! -s /tmp/bg.pid ]; do sleep 0.05; done; kill -0 $(cat /tmp/bg.pid) && echo same pid namespace; touch /tmp/go").Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, "same pid namespace\n", string(res.Stdout), "stderr: %s", res.Stderr)
	res, err = bg.Wait()
	require.NoError(t, err)
	assert.Equal(t, sandbox.OK, res.Status)
	assert.Contains(t, string(res.Stdout), "seen")

	res, err = sb.Exec(ctx, "cat", "/tmp/shared")
	require.NoError(t, err)
	assert.Equal(t, "data\n", string(res.Stdout))

	// Errors are those of Run.
	_, err = sb.Command("no-such-command").Run(ctx)
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "execve", se.Stage)
	_, err = (&sandbox.Cmd{Args: []string{"true"}}).Run(ctx)
	assert.Error(t, err)
}

func TestSandboxSignal(t *testing.T) {
	img, _ := busybox(t)
	sb := newSandbox(t, img, nil)
	var out bytes.Buffer
	var mu sync.Mutex
	c := sb.Command("sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
	c.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	p, err := c.Start(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), "ready") }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	res, err := p.Wait()
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "ready\ngot TERM\n", out.String(), "streamed output")
	assert.NoError(t, p.Signal(syscall.SIGTERM), "signalling an ended process is a no-op")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestSandboxFiles(t *testing.T) {
	img, root := busybox(t)
	// A link in the image aimed at a host path: it must resolve inside.
	hostDir := t.TempDir()
	require.NoError(t, os.Symlink(hostDir, filepath.Join(root, "escape")))
	sb := newSandbox(t, img, nil)

	require.NoError(t, sb.WriteFile("/data/in.txt", []byte("hello"), 0o644))
	b, err := sb.ReadFile("/data/in.txt")
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	res, err := sb.Command("cat", "/data/in.txt").Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "hello", string(res.Stdout))

	// Through the link: the write stays in the sandbox.
	assert.ErrorIs(t, sb.WriteFile("/escape/f", []byte("x"), 0o644), os.ErrNotExist, "the link's target does not exist in the sandbox")
	_, err = sb.Command("mkdir", "-p", hostDir).Run(context.Background())
	require.NoError(t, err)
	require.NoError(t, sb.WriteFile("/escape/f", []byte("x"), 0o644))
	entries, _ := os.ReadDir(hostDir)
	assert.Empty(t, entries, "a write followed a link to the host")
	b, err = sb.ReadFile(hostDir + "/f")
	require.NoError(t, err, "it landed at the link's target inside the sandbox")
	assert.Equal(t, "x", string(b))

	// Trees in and out.
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/b/f"), []byte("deep"), 0o604))
	require.NoError(t, os.Symlink("b/f", filepath.Join(src, "a/link")))
	require.NoError(t, sb.CopyIn(src, "/tree"))
	res, err = sb.Command("sh", "-c", "cat /tree/a/link; stat -c %a /tree/a/b/f").Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "deep604\n", string(res.Stdout), "stderr: %s", res.Stderr)
	_, err = sb.Command("sh", "-c", "mkdir -p /tmp/out/x && echo made > /tmp/out/x/y && ln -s /etc/passwd /tmp/out/l").Run(context.Background())
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "out")
	require.NoError(t, sb.CopyOut("/tmp/out", dst))
	b, err = os.ReadFile(filepath.Join(dst, "x/y"))
	require.NoError(t, err)
	assert.Equal(t, "made\n", string(b))
	l, err := os.Readlink(filepath.Join(dst, "l"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/passwd", l, "links come out as links")

	_, err = sb.ReadFile("/no/such")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestSandboxNetwork(t *testing.T) {
	img, root := busybox(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "www"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "www/index.html"), []byte("hello from httpd\n"), 0o644))
	sb := newSandbox(t, img, nil)
	ctx := context.Background()
	srv, err := sb.Command("httpd", "-f", "-p", "8080", "-h", "/www").Start(ctx)
	require.NoError(t, err)

	var conn net.Conn
	require.Eventually(t, func() bool {
		conn, err = sb.Dial(ctx, "tcp", "127.0.0.1:8080")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	assert.Equal(t, "hello from httpd\n", string(body))

	// The host's loopback is not the sandbox's.
	_, err = net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
	assert.Error(t, err)

	addr, err := sb.Forward(ctx, 8080)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(addr, "127.0.0.1:"))
	for range 3 {
		r, err := http.Get("http://" + addr + "/")
		require.NoError(t, err)
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		assert.Equal(t, "hello from httpd\n", string(body))
	}
	require.NoError(t, srv.Signal(syscall.SIGTERM))
	res, err := srv.Wait()
	require.NoError(t, err)
	assert.Equal(t, syscall.SIGTERM, res.Signal)
}

func TestSandboxHostNetwork(t *testing.T) {
	img, _ := busybox(t)
	sb := newSandbox(t, img, &sandbox.Config{Network: sandbox.NetworkHost})
	res, err := sb.Command("sh", "-c", "ls /sys/class/net 2>/dev/null | wc -l; cat /proc/net/dev | wc -l").Run(context.Background())
	require.NoError(t, err)
	hostDev, _ := os.ReadFile("/proc/net/dev")
	assert.Contains(t, string(res.Stdout), fmt.Sprint(strings.Count(string(hostDev), "\n")))
}

func TestSandboxCloseWhileRunning(t *testing.T) {
	img, _ := busybox(t)
	sb, err := sandbox.New(context.Background(), img, nil)
	require.NoError(t, err)
	p, err := sb.Command("sleep", "100").Start(context.Background())
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := sb.Command("sleep", "100").Run(context.Background())
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, sb.Close()) }()
	}
	wg.Wait()
	res, err := p.Wait()
	require.NoError(t, err)
	assert.Equal(t, syscall.SIGKILL, res.Signal)
	<-done
	_, err = sb.Command("true").Run(context.Background())
	assert.ErrorIs(t, err, sandbox.ErrClosed)
	assert.ErrorIs(t, sb.WriteFile("/x", nil, 0o644), sandbox.ErrClosed)
}

func TestSandboxLimits(t *testing.T) {
	requireCgroups(t)
	img, _ := busybox(t)
	// The sandbox's memory limit caps all its commands together.
	sb := newSandbox(t, img, &sandbox.Config{Limits: sandbox.Limits{Memory: 32 << 20}})
	ctx := context.Background()
	res, err := sb.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1").Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, sandbox.OK, res.Status)
	assert.InDelta(t, 16<<20, res.MemoryPeak, 2<<20, "a command's own peak")
	res, err = sb.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=40M", "count=1").Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, sandbox.MemoryLimit, res.Status)
	// The command's own limit, inside the sandbox's.
	c := sb.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1")
	c.Limits.Memory = 8 << 20
	res, err = c.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, sandbox.MemoryLimit, res.Status)
}

// TestCrashCleanup kills a process holding running sandboxes with SIGKILL:
// the sandboxes die with it, and the next call removes what it left.
func TestCrashCleanup(t *testing.T) {
	requireCgroups(t)
	img, root := busybox(t)
	requireSandbox(t, img)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), "HUTCH_TEST_HELPER=hold-sandboxes", "HUTCH_TEST_ROOT="+root)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	var pid int
	var groups string
	_, err = fmt.Sscanf(line, "ready %d %s", &pid, &groups)
	require.NoError(t, err, "helper said %q", line)
	paths := strings.Split(groups, ",")
	for _, g := range paths {
		require.DirExists(t, g)
	}
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()

	// The sandboxes' processes die with their owner.
	require.Eventually(t, func() bool {
		for _, g := range paths {
			b, err := os.ReadFile(filepath.Join(g, "cgroup.procs"))
			if err == nil && len(bytes.TrimSpace(b)) > 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "processes outlived their owner")

	// What is left on disk is found and removed. (A child the owner was
	// cloning as it died may hold its lock a moment longer, until it sees
	// its parent gone: the next call gets it.)
	var rep *sandbox.GCReport
	require.Eventually(t, func() bool {
		r, err := sandbox.CollectGarbage()
		require.NoError(t, err)
		if rep == nil {
			rep = r
		} else {
			rep.Locks = append(rep.Locks, r.Locks...)
		}
		mine := 0
		for _, l := range rep.Locks {
			if strings.Contains(l, fmt.Sprintf("-%d-", pid)) {
				mine++
			}
		}
		return mine >= 2
	}, 10*time.Second, 50*time.Millisecond, "the dead owner's locks were not collected")
	for _, g := range paths {
		assert.NoDirExists(t, g)
	}
}

// holdSandboxes is the helper process of TestCrashCleanup: it starts a
// long-lived sandbox with a command and a Run, prints their cgroups, and
// waits to be killed.
func holdSandboxes() int {
	img := rootfs.Dir(os.Getenv("HUTCH_TEST_ROOT"))
	ctx := context.Background()
	sb, err := sandbox.New(ctx, img, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := sb.Command("sh", "-c", "sleep 1000 & sleep 1000").Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := (&sandbox.Cmd{Image: img, Args: []string{"sleep", "1000"}}).Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var groups []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		groups, _ = filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/hutch/*-%d-*", os.Getpid()))
		if v2, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/hutch/*-%d-*", os.Getpid())); len(v2) > 0 {
			groups = v2
		}
		if len(groups) >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(groups) < 2 {
		fmt.Fprintln(os.Stderr, "no cgroups found")
		return 1
	}
	fmt.Printf("ready %d %s\n", os.Getpid(), strings.Join(groups, ","))
	select {}
}

// A limit that ends a command in a long-lived sandbox ends all it
// started there, not only the child that joined the sandbox.
func TestSandboxLimitKillsTheCommand(t *testing.T) {
	img, _ := busybox(t)
	sb := newSandbox(t, img, nil)
	c := sb.Command("sh", "-c", "sleep 100 & sleep 100")
	c.Limits.WallTime = 200 * time.Millisecond
	start := time.Now()
	res, err := c.Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, sandbox.WallTimeLimit, res.Status)
	assert.Less(t, time.Since(start), 2*time.Second)
	// (Without cgroups the kill is by process group, and a killed process
	// may show for a moment until init reaps it.)
	assert.Eventually(t, func() bool {
		res, err := sb.Command("sh", "-c", "ps -o comm | grep -c sleep").Run(context.Background())
		return err == nil && string(res.Stdout) == "0\n"
	}, 5*time.Second, 50*time.Millisecond, "the command's processes outlived its limit")
}
