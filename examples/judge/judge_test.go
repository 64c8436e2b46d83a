package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	probeOnce    sync.Once
	probeErr     error
	cgroupMemory bool
)

// requireSandbox skips the test when this machine cannot run a sandbox,
// found by trying one, or lacks one of the tools in the host image.
func requireSandbox(t *testing.T, tools ...string) {
	t.Helper()
	probeOnce.Do(func() {
		res, err := sandbox.Run(context.Background(), rootfs.Host(), []string{"true"},
			sandbox.Limits{Memory: 64 << 20, WallTime: 10 * time.Second})
		switch {
		case err != nil:
			probeErr = err
		case res.Status != sandbox.OK:
			probeErr = fmt.Errorf("`true` ended %v", res.Status)
		default:
			cgroupMemory = res.Enforced["Memory"] == "cgroup"
		}
	})
	if probeErr != nil {
		t.Skipf("this machine cannot run a sandbox: %v", probeErr)
	}
	for _, tool := range tools {
		if !inHostImage(tool) {
			t.Skipf("needs %s in the host image (%s)", tool, sandbox.DefaultPath)
		}
	}
}

// inHostImage says whether tool is on the sandbox's PATH in rootfs.Host(),
// which shows the host's /usr, /bin and /sbin.
func inHostImage(tool string) bool {
	for _, dir := range filepath.SplitList(sandbox.DefaultPath) {
		if fi, err := os.Stat(filepath.Join(dir, tool)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}

var toolOf = map[string]string{"c": "gcc", "cpp": "g++", "python": "python3"}

type testJudge struct {
	*judge
	srv *httptest.Server
}

// startJudge serves a judge on a local test server, with its submissions'
// directories in a temporary directory the test checks is left empty.
func startJudge(t *testing.T, workers, queue int, run runner) *testJudge {
	t.Helper()
	j := newJudge(rootfs.Host(), workers, queue, run, nil)
	j.tmpDir = t.TempDir()
	srv := httptest.NewServer(j.handler())
	t.Cleanup(func() {
		srv.Close()
		left, err := os.ReadDir(j.tmpDir)
		assert.NoError(t, err)
		assert.Empty(t, left, "submission directories left behind")
	})
	return &testJudge{j, srv}
}

func (tj *testJudge) post(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(tj.srv.URL+"/submissions", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (tj *testJudge) submit(t *testing.T, sub submission) verdict {
	t.Helper()
	body, err := json.Marshal(sub)
	require.NoError(t, err)
	status, out := tj.post(t, body)
	require.Equal(t, http.StatusOK, status, "%s", out)
	var v verdict
	require.NoError(t, json.Unmarshal(out, &v), "%s", out)
	return v
}

const (
	cSum = `#include <stdio.h>
int main(void) { long a, b; while (scanf("%ld %ld", &a, &b) == 2) printf("%ld\n", a + b); return 0; }`
	cppSum = `#include <iostream>
int main() { long a, b; while (std::cin >> a >> b) std::cout << a + b << '\n'; }`
	pySum = `import sys
for line in sys.stdin:
    a, b = map(int, line.split())
    print(a + b)`
)

var sumTests = []testCase{
	{Input: "1 2\n", ExpectedOutput: "3\n"},
	{Input: "40 2\n-5 5\n", ExpectedOutput: "42\n0\n"},
	{Input: "1000000000 1000000000\n", ExpectedOutput: "2000000000\n"},
}

// TestVerdicts submits a known program for every verdict in each language
// and checks the judge's answer.
func TestVerdicts(t *testing.T) {
	requireSandbox(t)
	for _, mode := range []string{"fresh", "pooled"} {
		t.Run(mode, func(t *testing.T) { testVerdicts(t, mode) })
	}
}

// testVerdicts runs the table with each case in a fresh sandbox, or in one
// a pool set up ahead: the answers must be the same.
func testVerdicts(t *testing.T, mode string) {
	var run runner
	if mode == "pooled" {
		if os.Geteuid() != 0 {
			t.Skip("a pool's per-run binds need root")
		}
		pool, err := newCasePool(rootfs.Host(), 2)
		require.NoError(t, err)
		t.Cleanup(func() { pool.Close() })
		run = poolRunner(pool)
	}
	tj := startJudge(t, 2, 64, run)
	one := []testCase{{Input: "", ExpectedOutput: "done\n"}}

	tests := []struct {
		name, lang, src string
		tests           []testCase
		timeMS, memMB   int64
		compare         string
		want            string   // overall verdict
		cases           []string // per-case verdicts, when not all equal to want
		signal          string   // the first case's signal, when one
		stderr          string   // in the first case's stderr
		// needCgroup: the verdict needs the run's cgroup (as root). Without
		// one, Memory falls back to RLIMIT_AS and CPUTime to RLIMIT_CPU one
		// second past the limit, and a killed run reports no usage.
		needCgroup bool
	}{
		{name: "c accepted", lang: "c", src: cSum, tests: sumTests, want: verdictAccepted},
		{name: "cpp accepted", lang: "cpp", src: cppSum, tests: sumTests, want: verdictAccepted},
		{name: "python accepted", lang: "python", src: pySum, tests: sumTests, want: verdictAccepted},

		{name: "c wrong answer on one case", lang: "c",
			src: `#include <stdio.h>
int main(void) { long a, b; scanf("%ld %ld", &a, &b); printf("%ld\n", a > 1 ? a - b : a + b); }`,
			tests: sumTests[:2], want: verdictWrongAnswer,
			cases: []string{verdictAccepted, verdictWrongAnswer}},
		{name: "python wrong answer", lang: "python", src: `print(41)`,
			tests: []testCase{{ExpectedOutput: "42"}}, want: verdictWrongAnswer},

		{name: "c time limit: busy loop", lang: "c", timeMS: 300, needCgroup: true,
			src:  `int main(void) { volatile unsigned long n = 0; for (;;) n++; }`,
			want: verdictTimeLimit, signal: "SIGKILL"},
		{name: "cpp time limit: busy loop", lang: "cpp", timeMS: 300, needCgroup: true,
			src:  `int main() { volatile unsigned long n = 0; for (;;) n = n + 1; }`,
			want: verdictTimeLimit},
		{name: "python time limit: busy loop", lang: "python", timeMS: 300, needCgroup: true,
			src: "while True:\n    pass\n", want: verdictTimeLimit},
		{name: "python time limit: sleeps (wall clock)", lang: "python", timeMS: 200,
			src: "import time\ntime.sleep(60)\n", want: verdictTimeLimit},

		{name: "c memory limit", lang: "c", memMB: 64, needCgroup: true,
			src: `#include <stdlib.h>
#include <string.h>
int main(void) {
	size_t n = 512u << 20; volatile char *p = malloc(n);
	if (!p) return 3;
	for (size_t i = 0; i < n; i += 4096) p[i] = 1;
	return 0;
}`,
			want: verdictMemoryLimit},
		{name: "cpp memory limit", lang: "cpp", memMB: 64, needCgroup: true,
			src: `#include <vector>
#include <cstdio>
int main() { std::vector<char> v(512u << 20, 1); std::printf("%d\n", v[12345]); }`,
			want: verdictMemoryLimit},
		{name: "python memory limit", lang: "python", memMB: 64, needCgroup: true,
			src: "x = b'x' * (512 << 20)\nprint(len(x))\n", want: verdictMemoryLimit},

		{name: "c output limit", lang: "c",
			src: `#include <stdio.h>
int main(void) { for (;;) fputs("yes yes yes yes yes yes yes yes\n", stdout); }`,
			want: verdictOutputLimit},
		{name: "python output limit", lang: "python",
			src: "while True:\n    print('y' * 1000)\n", want: verdictOutputLimit},

		{name: "c runtime error: segfault", lang: "c",
			src:  `int main(void) { volatile int *p = 0; *p = 1; return 0; }`,
			want: verdictRuntimeError, signal: "SIGSEGV"},
		{name: "c runtime error: exit 1", lang: "c",
			src: `#include <stdio.h>
int main(void) { fprintf(stderr, "bad input\n"); return 1; }`,
			want: verdictRuntimeError, stderr: "bad input"},
		{name: "cpp runtime error: abort", lang: "cpp",
			src: `#include <cstdlib>
int main() { std::abort(); }`,
			want: verdictRuntimeError, signal: "SIGABRT"},
		{name: "cpp runtime error: uncaught exception", lang: "cpp",
			src: `#include <stdexcept>
int main() { throw std::runtime_error("boom"); }`,
			want: verdictRuntimeError, signal: "SIGABRT", stderr: "boom"},
		{name: "python runtime error: exception", lang: "python",
			src: "print(1 // 0)\n", want: verdictRuntimeError, stderr: "ZeroDivisionError"},

		{name: "c compile error", lang: "c", src: "int main(void) { return 0 }\n",
			want: verdictCompileError, stderr: "error"},
		{name: "cpp compile error", lang: "cpp", src: "int main() { undeclared(); }\n",
			want: verdictCompileError, stderr: "undeclared"},
		{name: "python compile error", lang: "python", src: "print(1\n",
			want: verdictCompileError, stderr: "SyntaxError"},

		{name: "whitespace-tolerant by default", lang: "python",
			src:   "print('1 2  ')\nprint('3', end='')\n",
			tests: []testCase{{ExpectedOutput: "1 2 3\n"}}, want: verdictAccepted},
		{name: "whitespace: CRLF and trailing blank lines", lang: "c", compare: compareWhitespace,
			src: `#include <stdio.h>
int main(void) { printf("4\r\n2\r\n\r\n\r\n"); }`,
			tests: []testCase{{ExpectedOutput: "4\n2"}}, want: verdictAccepted},
		{name: "whitespace: a different token is wrong", lang: "python", compare: compareWhitespace,
			src: "print('1 2 4')\n", tests: []testCase{{ExpectedOutput: "1 2 3\n"}}, want: verdictWrongAnswer},
		{name: "exact: a missing newline is wrong", lang: "python", compare: compareExact,
			src: "print('42', end='')\n", tests: []testCase{{ExpectedOutput: "42\n"}}, want: verdictWrongAnswer},
		{name: "exact: byte for byte", lang: "python", compare: compareExact,
			src: "print('42')\n", tests: []testCase{{ExpectedOutput: "42\n"}}, want: verdictAccepted},

		// The judge's own promise: the submission runs sandboxed.
		{name: "python sees the sandbox", lang: "python",
			src: `import os, socket
print(os.getuid(), socket.gethostname(), os.path.exists('/etc/shadow'), os.access('/work', os.W_OK))`,
			tests: []testCase{{ExpectedOutput: "65534 hutch False False\n"}}, want: verdictAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requireSandbox(t, toolOf[tt.lang])
			if tt.needCgroup && !cgroupMemory {
				t.Skip("needs the run's cgroup (run as root): this machine enforces limits with rlimits")
			}
			if tt.lang == "python" && strings.Contains(tt.name, "sees the sandbox") && os.Geteuid() != 0 {
				t.Skip("the sandbox's user is nobody only when the judge runs as root")
			}
			sub := submission{Language: tt.lang, Source: tt.src, Tests: tt.tests,
				TimeLimitMS: tt.timeMS, MemoryLimitMB: tt.memMB, Compare: tt.compare}
			if sub.Tests == nil {
				sub.Tests = one
			}
			v := tj.submit(t, sub)
			require.Equal(t, tt.want, v.Verdict, "%+v", v)
			require.Equal(t, len(sub.Tests), v.Total)

			if tt.want == verdictCompileError {
				assert.Empty(t, v.Cases)
				assert.Contains(t, v.CompileOutput, tt.stderr)
				return
			}
			require.Len(t, v.Cases, len(sub.Tests))
			want := tt.cases
			if want == nil {
				for range sub.Tests {
					want = append(want, tt.want)
				}
			}
			var got []string
			passed := 0
			for _, c := range v.Cases {
				got = append(got, c.Verdict)
				if c.Verdict == verdictAccepted {
					passed++
				}
			}
			assert.Equal(t, want, got)
			assert.Equal(t, passed, v.Passed)

			first := v.Cases[0]
			if tt.signal != "" {
				assert.Equal(t, tt.signal, first.Signal)
				assert.Equal(t, -1, first.ExitCode)
			}
			if tt.stderr != "" {
				assert.Contains(t, first.Stderr, tt.stderr)
			}
			if cgroupMemory {
				assert.Positive(t, first.MemoryPeakBytes, "memory_peak_bytes")
			}
			switch tt.want {
			case verdictTimeLimit:
				if strings.Contains(tt.name, "busy loop") {
					assert.GreaterOrEqual(t, first.CPUTimeMS, tt.timeMS, "cpu_time_ms of a busy loop")
					assert.Less(t, first.CPUTimeMS, tt.timeMS+500, "cpu_time_ms of a busy loop")
				} else {
					assert.Less(t, first.CPUTimeMS, tt.timeMS, "cpu_time_ms of a sleeper")
				}
			case verdictMemoryLimit:
				assert.GreaterOrEqual(t, first.MemoryPeakBytes, (tt.memMB-8)<<20, "memory_peak_bytes at the limit")
				assert.LessOrEqual(t, first.MemoryPeakBytes, (tt.memMB+1)<<20, "memory_peak_bytes at the limit")
			case verdictOutputLimit:
				assert.Contains(t, first.Stdout, "[... truncated]")
			}
		})
	}
}

// TestCPUTimeAndMemoryReported checks that an accepted case reports what it
// used: a program that touches 100 MiB and spins for a while.
func TestCPUTimeAndMemoryReported(t *testing.T) {
	requireSandbox(t, "gcc")
	if !cgroupMemory {
		t.Skip("peak memory is exact only with a cgroup (not root?)")
	}
	tj := startJudge(t, 1, 0, nil)
	v := tj.submit(t, submission{Language: "c", TimeLimitMS: 5000, MemoryLimitMB: 256, Source: `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
int main(void) {
	size_t n = 100u << 20; char *p = malloc(n); memset(p, 1, n);
	clock_t end = clock() + CLOCKS_PER_SEC / 5; volatile long x = 0; while (clock() < end) x++;
	printf("%d\n", p[n / 2]);
}`, Tests: []testCase{{ExpectedOutput: "1\n"}}})
	require.Equal(t, verdictAccepted, v.Verdict, "%+v", v)
	c := v.Cases[0]
	assert.InDelta(t, 200, c.CPUTimeMS, 100, "cpu_time_ms")
	assert.InDelta(t, 100<<20, c.MemoryPeakBytes, 8<<20, "memory_peak_bytes")
}

// TestBadRequests checks that the judge refuses what it must not judge, with
// a JSON error and the right status, before anything runs.
func TestBadRequests(t *testing.T) {
	// Nothing here reaches a sandbox: a runner that fails the test says so.
	tj := startJudge(t, 1, 0, func(context.Context, *sandbox.Cmd) (*sandbox.Result, error) {
		t.Error("a bad request reached the runner")
		return nil, fmt.Errorf("unexpected")
	})
	valid := func(mod func(s map[string]any)) []byte {
		s := map[string]any{
			"language": "python", "source": "print(1)",
			"tests": []map[string]string{{"input": "", "expected_output": "1"}},
		}
		mod(s)
		b, err := json.Marshal(s)
		require.NoError(t, err)
		return b
	}
	manyTests := make([]map[string]string, maxTests+1)
	for i := range manyTests {
		manyTests[i] = map[string]string{"input": "", "expected_output": ""}
	}

	tests := []struct {
		name   string
		body   []byte
		status int
		msg    string
	}{
		{"not JSON", []byte(`{"language": "c", `), 400, "invalid JSON"},
		{"two values", []byte(`{} {}`), 400, "invalid JSON"},
		{"unknown field", valid(func(s map[string]any) { s["timeout"] = 5 }), 400, "unknown field"},
		{"wrong type", valid(func(s map[string]any) { s["tests"] = "none" }), 400, "invalid JSON"},
		{"unknown language", valid(func(s map[string]any) { s["language"] = "cobol" }), 400, `unknown language "cobol"`},
		{"no language", valid(func(s map[string]any) { delete(s, "language") }), 400, "unknown language"},
		{"empty source", valid(func(s map[string]any) { s["source"] = "  \n" }), 400, "source is empty"},
		{"no tests", valid(func(s map[string]any) { delete(s, "tests") }), 400, "no tests"},
		{"time limit too large", valid(func(s map[string]any) { s["time_limit_ms"] = 60000 }), 400, "time_limit_ms"},
		{"negative time limit", valid(func(s map[string]any) { s["time_limit_ms"] = -1 }), 400, "time_limit_ms"},
		{"memory limit too small", valid(func(s map[string]any) { s["memory_limit_mb"] = 1 }), 400, "memory_limit_mb"},
		{"memory limit too large", valid(func(s map[string]any) { s["memory_limit_mb"] = 1 << 20 }), 400, "memory_limit_mb"},
		{"unknown compare", valid(func(s map[string]any) { s["compare"] = "fuzzy" }), 400, "unknown compare"},

		{"source too large", valid(func(s map[string]any) { s["source"] = strings.Repeat("x", maxSource+1) }), 413, "source is"},
		{"too many tests", valid(func(s map[string]any) { s["tests"] = manyTests }), 413, "tests, more than"},
		{"input too large", valid(func(s map[string]any) {
			s["tests"] = []map[string]string{{"input": strings.Repeat("1", maxCaseBytes+1)}}
		}), 413, "test 0"},
		{"body too large", valid(func(s map[string]any) {
			tests := make([]map[string]string, 5)
			for i := range tests {
				tests[i] = map[string]string{"input": strings.Repeat("1", maxCaseBytes)}
			}
			s["tests"] = tests
		}), 413, "request body larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := tj.post(t, tt.body)
			assert.Equal(t, tt.status, status, "%s", out)
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal(out, &e), "the error is JSON: %s", out)
			assert.Contains(t, e.Error, tt.msg)
		})
	}

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(tj.srv.URL + "/submissions")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
	})
}

// TestQueueFull fills the only worker and the only queue slot, checks that a
// third submission is refused with 503 at once, then lets the first two
// finish.
func TestQueueFull(t *testing.T) {
	requireSandbox(t, "python3")
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	blocking := func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return cmd.Run(ctx)
	}
	tj := startJudge(t, 1, 1, blocking)
	body, err := json.Marshal(submission{Language: "python", Source: "print(input())",
		Tests: []testCase{{Input: "hi\n", ExpectedOutput: "hi\n"}}})
	require.NoError(t, err)

	type answer struct {
		status int
		body   []byte
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			resp, err := http.Post(tj.srv.URL+"/submissions", "application/json", bytes.NewReader(body))
			if err != nil {
				answers <- answer{0, []byte(err.Error())}
				return
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, out}
		}()
	}
	// One is judged (its case is blocked in the runner), the other waits.
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first submission never reached its test case")
	}
	require.Eventually(t, func() bool { return len(tj.admit) == 2 }, 10*time.Second, 5*time.Millisecond,
		"the second submission is not queued")

	status, out := tj.post(t, body)
	assert.Equal(t, http.StatusServiceUnavailable, status, "%s", out)
	assert.Contains(t, string(out), "busy")

	close(release)
	for range 2 {
		a := <-answers
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		var v verdict
		require.NoError(t, json.Unmarshal(a.body, &v))
		assert.Equal(t, verdictAccepted, v.Verdict)
	}
	assert.Zero(t, len(tj.admit), "admission tokens left")
}

func TestOutputMatches(t *testing.T) {
	tests := []struct {
		mode, got, want string
		match           bool
	}{
		{compareExact, "1 2\n", "1 2\n", true},
		{compareExact, "1 2", "1 2\n", false},
		{compareExact, "1  2\n", "1 2\n", false},
		{compareWhitespace, "1 2", "1 2\n", true},
		{compareWhitespace, "1   2 \r\n\n", "1 2", true},
		{compareWhitespace, "1\n2", "1 2", true},
		{compareWhitespace, "", "\n", true},
		{compareWhitespace, "12", "1 2", false},
		{compareWhitespace, "1 2 3", "1 2", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.match, outputMatches(tt.mode, []byte(tt.got), tt.want), "%s %q vs %q", tt.mode, tt.got, tt.want)
	}
}
