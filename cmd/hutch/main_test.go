package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
)

// mainEnv makes this test binary the hutch command (main), for tests of
// what main does before mainErr.
const mainEnv = "HUTCH_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

func hutch(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainErr(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRun(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BusyboxRoot(t)
	result := filepath.Join(t.TempDir(), "result.json")
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		stdout   string
		stderr   string
		status   string
		exitCode int
		signal   int
	}{
		{name: "ok", args: []string{"--", "sh", "-c", "echo hi from $(hostname)"}, stdout: "hi from hutch\n", status: "ok"},
		{name: "exit code", args: []string{"--", "sh", "-c", "exit 3"}, code: 3, status: "nonzero_exit", exitCode: 3},
		{name: "signal", args: []string{"--", "sh", "-c", "kill -TERM $$"}, code: 128 + 15, status: "signaled", exitCode: -1, signal: 15},
		{name: "stdin passes through", args: []string{"--", "tr", "a-z", "A-Z"}, stdin: "abc", stdout: "ABC", status: "ok"},
		{name: "flags", args: []string{"--hostname", "box", "--env", "A=1", "--env", "B=2", "--workdir", "/etc", "--", "sh", "-c", "echo $(hostname) $A$B $(pwd)"}, stdout: "box 12 /etc\n", status: "ok"},
		{name: "wall time", args: []string{"--wall", "200ms", "--", "sleep", "10"}, code: 137, stderr: "wall time limit", status: "wall_time_limit", exitCode: -1, signal: 9},
		{name: "output", args: []string{"--output", "1K", "--", "yes"}, code: 137, stderr: "output limit", status: "output_limit", exitCode: -1, signal: 9},
		{name: "memory", args: []string{"--memory", "8M", "--", "sh", "-c", "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo ${#x}"}, code: 137, stderr: "memory limit", status: "memory_limit", exitCode: -1, signal: 9},
		{name: "cpu time", args: []string{"--time", "0.3", "--", "sh", "-c", "while :; do :; done"}, code: 137, stderr: "cpu time limit", status: "cpu_time_limit", exitCode: -1, signal: 9},
		{name: "file size", args: []string{"--fsize", "1M", "--", "dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=100"}, code: 128 + 25, stderr: "file size limit", status: "file_size_limit", exitCode: -1, signal: 25},
		{name: "rlimits", args: []string{"--nofile", "64", "--stack", "16M", "--", "sh", "-c", "ulimit -n; ulimit -s"}, stdout: "64\n16384\n", status: "ok"},
		{name: "pids", args: []string{"--pids", "8", "--", "sh", "-c", "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"}, stdout: "8\n", status: "ok"}, // the cgroup held sh, the subshell and 6 sleeps; /proc shows init too,
		{name: "default user", args: []string{"--", "id", "-u"}, stdout: "65534\n", status: "ok"},
		{name: "user", args: []string{"--user", "1000:50", "--", "sh", "-c", "echo $(id -u):$(id -g)"}, stdout: "1000:50\n", status: "ok"},
		{name: "bad user", args: []string{"--user", "bob", "--", "true"}, code: 125, stderr: "UID[:GID]"},
		{name: "missing command", args: []string{"--", "no-such-command"}, code: 125, stderr: "execve no-such-command: no such file or directory"},
		{name: "no command", args: []string{}, code: 125, stderr: "no command given"},
		{name: "bad size", args: []string{"--output", "lots", "--", "true"}, code: 125, stderr: "not a size"},
		{name: "bad bind", args: []string{"--bind", "nocolon", "--", "true"}, code: 125, stderr: "SRC:DST"},
		{name: "unknown flag", args: []string{"--frobnicate", "--", "true"}, code: 125, stderr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(result)
			args := append([]string{"run", "--image", root, "--result", result}, tt.args...)
			code, stdout, stderr := hutch(t, tt.stdin, args...)
			assert.Equal(t, tt.code, code, "stderr: %s", stderr)
			if tt.code < 128 {
				assert.Equal(t, tt.stdout, stdout)
			}
			assert.Contains(t, stderr, tt.stderr)
			if tt.status == "" {
				assert.NoFileExists(t, result)
				return
			}
			b, err := os.ReadFile(result)
			require.NoError(t, err)
			var j map[string]any
			require.NoError(t, json.Unmarshal(b, &j))
			assert.Equal(t, tt.status, j["status"])
			assert.EqualValues(t, tt.exitCode, j["exit_code"])
			assert.EqualValues(t, tt.signal, j["signal"])
			for _, k := range []string{"wall_time_s", "cpu_time_s", "memory_peak_bytes"} {
				assert.Contains(t, j, k)
			}
		})
	}
}

func TestBindFlag(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BusyboxRoot(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644))
	require.NoError(t, os.Chmod(dir, 0o777)) // the command runs as nobody
	code, stdout, stderr := hutch(t, "", "run", "--image", root, "--bind", dir+":/in", "--bind", dir+":/out:rw", "--", "sh", "-c", "cat /in/f; echo x > /out/g; echo y > /in/h")
	assert.Equal(t, 1, code, stderr)
	assert.Equal(t, "data", stdout)
	assert.FileExists(t, filepath.Join(dir, "g"))
	assert.NoFileExists(t, filepath.Join(dir, "h"))
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "4096": 4096, "1K": 1024, "64M": 64 << 20, "1G": 1 << 30, "1.5k": 1536, "2MiB": 2 << 20, "3mb": 3 << 20} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"x", "-1M", "M"} {
		_, err := parseSize(bad)
		assert.Error(t, err, bad)
	}
}

func TestPublish(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BusyboxRoot(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "www"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "www/index.html"), []byte("published\n"), 0o644))
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		done <- mainErr([]string{"run", "--image", root, "--wall", "3s", "-p", "8080", "--", "httpd", "-f", "-p", "8080", "-h", "/www"},
			strings.NewReader(""), &out, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, pr)
	var addr string
	_, err = fmt.Sscanf(line, "hutch: published %s", &addr)
	require.NoError(t, err, "stderr said %q", line)
	var body []byte
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "published\n", string(body))
	assert.Equal(t, 137, <-done, "the wall-time limit ends the server")
}

func TestGC(t *testing.T) {
	testenv.RequireRoot(t)
	t.Setenv("HUTCH_STORE_DIR", filepath.Join(t.TempDir(), "store"))
	code, stdout, stderr := hutch(t, "", "gc")
	assert.Equal(t, 0, code, stderr)
	assert.NotEmpty(t, stdout)
	code, _, stderr = hutch(t, "", "gc", "extra")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "no arguments")
}

// hutch run starts making its sandbox's network namespace in one of its
// first package initializers (cmd/hutch/internal/early); the sandbox joins
// it: a namespace of its own, with its loopback up, and nothing else.
func TestRunNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BusyboxRoot(t)
	cmd := exec.Command(os.Args[0], "run", "--image", root, "--",
		"sh", "-c", "readlink /proc/self/ns/net; ip -o link | cut -d' ' -f2,3")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	own, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2, "%s", out)
	assert.NotEqual(t, own, lines[0], "the sandbox is in the caller's network namespace")
	assert.Equal(t, "lo: <LOOPBACK,UP,LOWER_UP>", lines[1])
}

// hutch run blanks its own command line, which its sandbox's init shares:
// the sandbox reads "hutch run" in /proc/1/cmdline, not the flags (an
// --env value may be a secret, a path says where things are). Under the
// race detector init gets a copy of the process, which it blanks whole.
func TestRunHidesCommandLine(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BusyboxRoot(t)
	// As uid 0 in the sandbox: init's environment (the caller's) stays
	// out of reach all the same, init being non-dumpable.
	cmd := exec.Command(os.Args[0], "run", "--image", root, "--user", "0:0", "--env", "TOKEN=swordfish", "--",
		"sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo $TOKEN; cat /proc/1/environ >/dev/null 2>&1 && echo readable || echo denied")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(string(out), "\n")
	require.Len(t, lines, 4, "%s", out)
	assert.Equal(t, "denied", lines[2], "init's environment")
	want := "hutch run"
	if raceEnabled {
		want = ""
	}
	assert.Equal(t, want, strings.TrimSpace(lines[0]))
	assert.NotContains(t, lines[0], "swordfish")
	assert.NotContains(t, lines[0], root)
	assert.Equal(t, "swordfish", lines[1], "the command's environment is its own")
}
