package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

var (
	probeOnce sync.Once
	probeErr  error
	cgroups   bool
)

// requireSandbox skips the test unless this machine can run Python in a
// sandbox on the host image, found by trying it.
func requireSandbox(t *testing.T) {
	t.Helper()
	probeOnce.Do(func() {
		res, err := sandbox.Run(context.Background(), rootfs.Host(), []string{"python3", "-c", "pass"},
			sandbox.Limits{Memory: 64 << 20, WallTime: 10 * time.Second})
		switch {
		case err != nil:
			probeErr = err
		case res.Status != sandbox.OK:
			probeErr = fmt.Errorf("python3 -c pass ended %v: %s", res.Status, res.Stderr)
		default:
			cgroups = res.Enforced["Memory"] == "cgroup"
		}
	})
	if probeErr != nil {
		t.Skipf("this machine cannot run python3 in a sandbox: %v", probeErr)
	}
}

func requireCgroups(t *testing.T) {
	t.Helper()
	requireSandbox(t)
	if !cgroups {
		t.Skip("needs cgroup limits (run as root)")
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the script runs as nobody only when the service runs as root")
	}
}

func startService(t *testing.T, workers, queue int, run runFunc) (*service, string) {
	t.Helper()
	s := newService(rootfs.Host(), workers, queue, run, nil)
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/run", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func runScript(t *testing.T, url string, req runRequest) runResponse {
	t.Helper()
	body, err := json.Marshal(req)
	require.NoError(t, err)
	status, out := post(t, url, body)
	require.Equal(t, http.StatusOK, status, "%s", out)
	var resp runResponse
	require.NoError(t, json.Unmarshal(out, &resp), "%s", out)
	return resp
}

func TestRun(t *testing.T) {
	requireSandbox(t)
	_, url := startService(t, 2, 16, nil)

	tests := []struct {
		name    string
		req     runRequest
		status  sandbox.Status
		exit    int
		stdout  string // exact, unless contains says otherwise
		stderr  string // contained
		cgroups bool
	}{
		{name: "hello", req: runRequest{Script: "print('hello, world')"},
			status: sandbox.OK, stdout: "hello, world\n"},
		{name: "stdin", req: runRequest{Script: "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", Stdin: "1 2\n3 4\n"},
			status: sandbox.OK, stdout: "10\n"},
		{name: "exit code", req: runRequest{Script: "import sys\nsys.exit(3)"},
			status: sandbox.NonZeroExit, exit: 3},
		{name: "exception", req: runRequest{Script: "raise ValueError('nope')"},
			status: sandbox.NonZeroExit, exit: 1, stderr: "ValueError: nope"},
		{name: "syntax error", req: runRequest{Script: "print(("},
			status: sandbox.NonZeroExit, exit: 1, stderr: "SyntaxError"},
		{name: "killed by its own signal", req: runRequest{Script: "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)"},
			status: sandbox.Signaled, exit: -1},
		{name: "infinite loop", req: runRequest{Script: "while True: pass", TimeoutMS: 300},
			status: sandbox.CPUTimeLimit, exit: -1, cgroups: true},
		{name: "sleep", req: runRequest{Script: "import time\ntime.sleep(30)", TimeoutMS: 300},
			status: sandbox.WallTimeLimit, exit: -1},
		{name: "memory hog", req: runRequest{Script: "x = b'x' * (512 << 20)"},
			status: sandbox.MemoryLimit, exit: -1, cgroups: true},
		{name: "output flood", req: runRequest{Script: "while True: print('spam' * 100)"},
			status: sandbox.OutputLimit, exit: -1},
		// Python ignores SIGXFSZ, so past the file size limit its write
		// fails with EFBIG instead of the process being killed (which a C
		// program's would be: file_size_limit).
		{name: "big file", req: runRequest{Script: "with open('/tmp/big', 'wb') as f:\n    while True: f.write(b'x' * 65536)"},
			status: sandbox.NonZeroExit, exit: 1, stderr: "File too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.cgroups {
				requireCgroups(t)
			}
			resp := runScript(t, url, tt.req)
			require.Equal(t, tt.status, resp.Status, "%+v", resp)
			assert.Equal(t, tt.exit, resp.ExitCode)
			assert.NotEmpty(t, resp.Message)
			if tt.stdout != "" {
				assert.Equal(t, tt.stdout, resp.Stdout)
			}
			assert.Contains(t, resp.Stderr, tt.stderr)
			switch tt.status {
			case sandbox.CPUTimeLimit:
				assert.GreaterOrEqual(t, resp.CPUTimeMS, tt.req.TimeoutMS)
			case sandbox.OutputLimit:
				assert.True(t, resp.StdoutTruncated)
				assert.Len(t, resp.Stdout, int(scriptLimits.Output))
			case sandbox.MemoryLimit:
				assert.LessOrEqual(t, resp.MemoryPeakBytes, scriptLimits.Memory+1<<20)
			}
		})
	}
}

// TestHardenedDefault runs scripts that try what a hostile script would, and
// checks each gets a safe outcome. Each script prints what happened to it.
func TestHardenedDefault(t *testing.T) {
	requireSandbox(t)
	_, url := startService(t, 2, 16, nil)

	// A secret on the host, and a server on the host's loopback.
	secret := filepath.Join(t.TempDir(), "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("host secret"), 0o644))
	hostSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a sandboxed script reached the host's server: %s %s", r.Method, r.URL)
	}))
	defer hostSrv.Close()
	_, hostPort, err := net.SplitHostPort(strings.TrimPrefix(hostSrv.URL, "http://"))
	require.NoError(t, err)

	// attempt prints "name: ok RESULT", "name: ERRNO" for an OSError, or
	// "name: ExceptionType".
	const try = `import errno, os, socket, sys
def attempt(name, f):
    try:
        r = f()
        print(f"{name}: ok {r!r}"[:200])
    except OSError as e:
        print(f"{name}: {errno.errorcode.get(e.errno, type(e).__name__)}")
    except BaseException as e:
        print(f"{name}: {type(e).__name__}")
`
	tests := []struct {
		name   string
		script string
		want   string // a line of stdout
		root   bool   // only when the service runs as root
	}{
		{"shadow", "attempt('read', lambda: open('/etc/shadow').read())", "read: ENOENT", false},
		{"host file", fmt.Sprintf("attempt('read', lambda: open(%q).read())", secret), "read: ENOENT", false},
		{"host home", "attempt('list', lambda: os.listdir('/home'))", "list: ok []", false},
		{"internet", "attempt('connect', lambda: socket.create_connection(('1.1.1.1', 53), timeout=2))", "connect: ENETUNREACH", false},
		{"host loopback", fmt.Sprintf("attempt('connect', lambda: socket.create_connection(('127.0.0.1', %s), timeout=2))", hostPort),
			"connect: ECONNREFUSED", false},
		{"network interfaces", "print(sorted(n for _, n in socket.if_nameindex()))", "['lo']", false},
		{"user", "print(os.getuid(), os.getgid(), os.geteuid())", "65534 65534 65534", true},
		{"write the image", "attempt('write', lambda: open('/usr/bin/python3', 'ab'))", "write: EACCES", true},
		{"write /etc", "attempt('write', lambda: open('/etc/passwd', 'a'))", "write: EACCES", true},
		{"kill init", "import signal\nattempt('kill', lambda: os.kill(1, signal.SIGKILL))", "kill: EPERM", true},
		{"see host processes", "print(len([p for p in os.listdir('/proc') if p.isdigit()]) <= 3)", "True", false},
		{"mount", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), errno.errorcode[ctypes.get_errno()])",
			"-1 EPERM", false},
		{"unshare", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.unshare(0x10000000), errno.errorcode[ctypes.get_errno()])",
			"-1 EPERM", false},
		{"capabilities", "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])", "0000000000000000", false},
		{"no_new_privs", "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0])", "1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.root {
				requireRoot(t)
			}
			resp := runScript(t, url, runRequest{Script: try + tt.script, TimeoutMS: 5000})
			require.Equal(t, sandbox.OK, resp.Status, "%+v", resp)
			assert.Contains(t, strings.Split(resp.Stdout, "\n"), tt.want, "stdout: %s", resp.Stdout)
			assert.NotContains(t, resp.Stdout, "host secret")
		})
	}

	t.Run("fork bomb", func(t *testing.T) {
		t.Parallel()
		requireCgroups(t)
		start := time.Now()
		resp := runScript(t, url, runRequest{TimeoutMS: 2000, Script: `import os
while True:
    try:
        os.fork()
    except OSError:
        pass`})
		// It spins at the process limit until its CPU or wall time runs out.
		assert.Contains(t, []sandbox.Status{sandbox.CPUTimeLimit, sandbox.WallTimeLimit}, resp.Status, "%+v", resp)
		assert.Less(t, time.Since(start), 10*time.Second)
	})

	t.Run("fork bomb is contained", func(t *testing.T) {
		t.Parallel()
		requireCgroups(t)
		// How many processes a script can have at once: at most the pids
		// limit.
		resp := runScript(t, url, runRequest{TimeoutMS: 5000, Script: `import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
        n += 1
except OSError:
    print(n + 1)`})
		require.Equal(t, sandbox.OK, resp.Status, "%+v", resp)
		var n int64
		_, err := fmt.Sscan(resp.Stdout, &n)
		require.NoError(t, err, "stdout: %q", resp.Stdout)
		assert.LessOrEqual(t, n, scriptLimits.Pids)
		assert.Greater(t, n, scriptLimits.Pids/2)
	})
}

// TestBadRequests checks the service's answers to requests it refuses:
// JSON errors with the right status, and nothing run.
func TestBadRequests(t *testing.T) {
	_, url := startService(t, 1, 0, func(context.Context, *sandbox.Cmd) (*sandbox.Result, error) {
		t.Error("a bad request reached the sandbox")
		return nil, fmt.Errorf("unexpected")
	})
	tests := []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"not JSON", `print("hi")`, 400, "invalid JSON"},
		{"truncated", `{"script": "print(1)"`, 400, "invalid JSON"},
		{"two values", `{"script": "1"} {"script": "2"}`, 400, "more than one value"},
		{"unknown field", `{"script": "print(1)", "memory_mb": 4096}`, 400, "unknown field"},
		{"wrong type", `{"script": 42}`, 400, "invalid JSON"},
		{"empty script", `{"script": "   "}`, 400, "script is empty"},
		{"no script", `{}`, 400, "script is empty"},
		{"NUL in script", `{"script": "print(1)\u0000"}`, 400, "NUL"},
		{"timeout too long", `{"script": "print(1)", "timeout_ms": 3600000}`, 400, "timeout_ms"},
		{"timeout negative", `{"script": "print(1)", "timeout_ms": -5}`, 400, "timeout_ms"},
		{"script too large", fmt.Sprintf(`{"script": "%s"}`, strings.Repeat("#", maxScript+1)), 413, "script is"},
		{"stdin too large", fmt.Sprintf(`{"script": "pass", "stdin": "%s"}`, strings.Repeat("x", maxStdin+1)), 413, "stdin is"},
		{"body too large", fmt.Sprintf(`{"script": "pass", "stdin": "%s"}`, strings.Repeat("x", maxBody)), 413, "request body larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := post(t, url, []byte(tt.body))
			assert.Equal(t, tt.status, status, "%s", out)
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal(out, &e), "the error is JSON: %s", out)
			assert.Contains(t, e.Error, tt.msg)
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(url + "/run")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})
}

// TestBusy holds the only worker and checks that a request past the queue is
// refused at once with 503, and that the held one then completes.
func TestBusy(t *testing.T) {
	requireSandbox(t)
	started, release := make(chan struct{}, 2), make(chan struct{})
	s, url := startService(t, 1, 0, func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error) {
		started <- struct{}{}
		<-release
		return cmd.Run(ctx)
	})
	body := []byte(`{"script": "print(6 * 7)"}`)
	done := make(chan runResponse, 1)
	go func() {
		resp, err := http.Post(url+"/run", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		defer resp.Body.Close()
		var r runResponse
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Error(err)
		}
		done <- r
	}()
	<-started

	status, out := post(t, url, body)
	assert.Equal(t, http.StatusServiceUnavailable, status, "%s", out)
	assert.Contains(t, string(out), "retry later")

	close(release)
	r := <-done
	assert.Equal(t, sandbox.OK, r.Status)
	assert.Equal(t, "42\n", r.Stdout)
	assert.Zero(t, len(s.admit))
}

// TestClientGone cancels a request while its script runs: the sandbox is
// killed, and the worker is free again at once.
func TestClientGone(t *testing.T) {
	requireSandbox(t)
	s, url := startService(t, 1, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/run",
		strings.NewReader(`{"script": "import time\nprint('started', flush=True)\ntime.sleep(30)", "timeout_ms": 10000}`))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return len(s.work) == 1 }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // let the script start
	cancel()
	require.Error(t, <-errc)
	require.Eventually(t, func() bool { return len(s.admit) == 0 }, 5*time.Second, 5*time.Millisecond,
		"the canceled script still holds its worker")
	resp := runScript(t, url, runRequest{Script: "print('next')"})
	assert.Equal(t, "next\n", resp.Stdout)
}
