package sandbox_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// timingSlack widens timing margins in the cgroup v2 VM lane, whose CPU is
// emulated (qemu TCG): there page faults, syscalls and process teardown cost
// tens of times more, and the watchdog's thread competes with the spinning
// program for two emulated CPUs. The margins the README states are checked
// on real hardware, in the host lane.
func timingSlack() time.Duration {
	if os.Getenv("HUTCH_TEST_LANE") == "vm-cgroup2" {
		return 4
	}
	return 1
}

// requireQuiet skips a test whose timing margins need a machine that is
// not running other tests at the same time: test/all runs them alone,
// without -short.
func requireQuiet(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("timing margins need a quiet machine; test/all runs this without -short")
	}
}

// requireCgroups skips unless runs get a cgroup here.
func requireCgroups(t *testing.T) {
	t.Helper()
	if err := cgroup.Enabled(); err != nil {
		t.Skipf("needs cgroups this process can create: %v", err)
	}
}

// helperCmd runs this test binary's helper NAME inside a sandbox on the
// host image.
func helperCmd(t *testing.T, limits sandbox.Limits, name string, args ...string) *sandbox.Cmd {
	t.Helper()
	img := rootfs.Host()
	requireSandbox(t, img)
	exe, err := os.Executable()
	require.NoError(t, err)
	return &sandbox.Cmd{
		Image:  img,
		Args:   append([]string{"/helper"}, args...),
		Env:    []string{"HUTCH_TEST_HELPER=" + name},
		Binds:  []sandbox.Bind{{Source: exe, Target: "/helper"}},
		Limits: limits,
	}
}

func TestCPUTimeAccuracy(t *testing.T) {
	requireQuiet(t)
	requireCgroups(t)
	for _, threads := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d threads", threads), func(t *testing.T) {
			res := run(t, helperCmd(t, sandbox.Limits{WallTime: 60 * time.Second}, "spin", strconv.Itoa(threads), "300"))
			require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
			self, err := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64)
			require.NoError(t, err)
			own := time.Duration(self)
			assert.GreaterOrEqual(t, own, 300*time.Millisecond)
			tolerance := max(own/50, 10*time.Millisecond) * timingSlack() // 2% or 10 ms
			assert.InDelta(t, float64(own), float64(res.CPUTime), float64(tolerance),
				"reported %v, the program's own getrusage %v", res.CPUTime, own)
			assert.Equal(t, "cgroup", res.Enforced["Pids"])
		})
	}
	t.Run("descendants count", func(t *testing.T) {
		c := helperCmd(t, sandbox.Limits{WallTime: 60 * time.Second}, "spin")
		c.Args = []string{"sh", "-c", "/helper 1 200 >/dev/null && /helper 1 200 >/dev/null && /helper 1 200 >/dev/null"}
		res := run(t, c)
		require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		assert.GreaterOrEqual(t, res.CPUTime, 590*time.Millisecond) // 3 x 200 ms, less 10 ms of tolerance
		assert.Less(t, res.CPUTime, 600*time.Millisecond+100*time.Millisecond*timingSlack())
	})
}

// TestMemoryPeakAccuracy uses busybox dd, whose buffer of bs bytes is its
// only sizable allocation: it reads /dev/zero into it, touching every page.
func TestMemoryPeakAccuracy(t *testing.T) {
	requireCgroups(t)
	img, _ := busybox(t)
	dd := func(limit int64, bs string) *sandbox.Result {
		return run(t, &sandbox.Cmd{Image: img, Args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=" + bs, "count=1"},
			Limits: sandbox.Limits{Memory: limit}})
	}
	base := dd(256<<20, "4k")
	require.Equal(t, sandbox.OK, base.Status, "stderr: %s", base.Stderr)
	baseline := base.MemoryPeak
	t.Logf("baseline peak: %.2f MiB", float64(baseline)/(1<<20))
	for _, n := range []int64{16, 64, 256} {
		t.Run(fmt.Sprintf("%d MiB", n), func(t *testing.T) {
			bs := strconv.FormatInt(n, 10) + "M"
			res := dd((n+32)<<20, bs)
			require.Equal(t, sandbox.OK, res.Status, "at limit N+32; stderr: %s", res.Stderr)
			want := n<<20 + baseline
			assert.InDelta(t, want, res.MemoryPeak, 2<<20, "peak %.2f MiB, want N+baseline = %.2f MiB",
				float64(res.MemoryPeak)/(1<<20), float64(want)/(1<<20))
			assert.Zero(t, res.OOMKills)

			res = dd((n-1)<<20, bs)
			assert.Equal(t, sandbox.MemoryLimit, res.Status, "at limit N-1")
			assert.Positive(t, res.OOMKills)
			assert.Equal(t, syscall.SIGKILL, res.Signal)
		})
	}
}

func TestCPUTimeLimit(t *testing.T) {
	requireQuiet(t)
	requireCgroups(t)
	res := run(t, helperCmd(t, sandbox.Limits{CPUTime: time.Second, WallTime: 30 * time.Second}, "loop"))
	assert.Equal(t, sandbox.CPUTimeLimit, res.Status)
	assert.GreaterOrEqual(t, res.CPUTime, time.Second)
	assert.LessOrEqual(t, res.CPUTime, time.Second+200*time.Millisecond*timingSlack())
	assert.Equal(t, "cgroup+rlimit", res.Enforced["CPUTime"])

	// Several processes share the budget.
	c := helperCmd(t, sandbox.Limits{CPUTime: time.Second, WallTime: 30 * time.Second}, "loop")
	c.Args = []string{"sh", "-c", "/helper & /helper & /helper"}
	res = run(t, c)
	assert.Equal(t, sandbox.CPUTimeLimit, res.Status)
	assert.LessOrEqual(t, res.CPUTime, time.Second+200*time.Millisecond*timingSlack())
}

func TestWallTimeLimitAccuracy(t *testing.T) {
	requireQuiet(t)
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sleep", "100"}, Limits: sandbox.Limits{WallTime: time.Second}})
	assert.Equal(t, sandbox.WallTimeLimit, res.Status)
	assert.GreaterOrEqual(t, res.WallTime, time.Second)
	assert.LessOrEqual(t, res.WallTime, time.Second+300*time.Millisecond*timingSlack())
}

func TestPidsLimit(t *testing.T) {
	requireCgroups(t)
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c",
		"(i=0; while [ $i -lt 100 ]; do sleep 100 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"},
		Limits: sandbox.Limits{Pids: 32, WallTime: 20 * time.Second}})
	n, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	require.NoError(t, err, "stdout %q stderr %q", res.Stdout, res.Stderr)
	assert.LessOrEqual(t, n, 32)
	assert.Greater(t, n, 16)

	// A real fork bomb ends at its limits and leaves the host as it was.
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "b() { b | b & }; b; sleep 100"},
		Limits: sandbox.Limits{Pids: 32, CPUTime: 2 * time.Second, WallTime: 3 * time.Second}})
	assert.Contains(t, []sandbox.Status{sandbox.CPUTimeLimit, sandbox.WallTimeLimit}, res.Status)
	// Nothing of the bomb is left: this process's run cgroups are gone
	// (a cgroup with a process in it could not have been removed).
	left, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/hutch/run-%d-*", os.Getpid()))
	left2, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/hutch/run-%d-*", os.Getpid()))
	assert.Empty(t, append(left, left2...))
}

func TestFileSizeLimit(t *testing.T) {
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=100"},
		Limits: sandbox.Limits{FileSize: 1 << 20}})
	assert.Equal(t, sandbox.FileSizeLimit, res.Status)
	assert.Equal(t, syscall.SIGXFSZ, res.Signal)
	assert.Equal(t, "rlimit", res.Enforced["FileSize"])
}

func TestRlimits(t *testing.T) {
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "ulimit -n; ulimit -s; ulimit -f"}, // -f counts 512-byte blocks
		Limits: sandbox.Limits{OpenFiles: 64, Stack: 16 << 20, FileSize: 4 << 20}})
	assert.Equal(t, "64\n16384\n8192\n", string(res.Stdout), "stderr: %s", res.Stderr)
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "ulimit -n; ulimit -s"}})
	assert.Equal(t, fmt.Sprintf("%d\n%d\n", sandbox.DefaultOpenFiles, sandbox.DefaultStack>>10), string(res.Stdout))
}

func TestRlimitAboveHardLimit(t *testing.T) {
	img, _ := busybox(t)
	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	if rl.Max >= 1<<30 {
		t.Skip("the hard limit on open files is unlimited here")
	}
	_, err := sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{OpenFiles: int64(rl.Max) + 1})
	var ce *sandbox.ConfigError
	if err == nil {
		t.Skip("this process may raise hard limits (CAP_SYS_RESOURCE)")
	}
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Limits.OpenFiles", ce.Field)
	assert.Contains(t, ce.Reason, "hard limit")
	assert.ErrorIs(t, err, fs.ErrInvalid)
}

func TestCPUsLimit(t *testing.T) {
	requireQuiet(t)
	requireCgroups(t)
	// Half a core: a second of wall time buys about half a second of CPU.
	res := run(t, helperCmd(t, sandbox.Limits{CPUs: 0.5, WallTime: time.Second}, "loop"))
	assert.Equal(t, sandbox.WallTimeLimit, res.Status)
	assert.InDelta(t, 500*time.Millisecond, res.CPUTime, float64(150*time.Millisecond*timingSlack()))
	assert.Equal(t, "cgroup", res.Enforced["CPUs"])
}

func TestFallbackWithoutCgroups(t *testing.T) {
	if err := cgroup.Enabled(); err == nil {
		t.Skip("cgroups are available here; the rootless lane runs this")
	}
	img, _ := busybox(t)
	// (A busybox loop: RLIMIT_AS, the memory fallback, is too tight for the
	// Go runtime's address space reservations.)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "while :; do :; done"},
		Limits: sandbox.Limits{CPUTime: time.Second, Memory: 512 << 20, Pids: 32, WallTime: 30 * time.Second}})
	assert.Equal(t, sandbox.CPUTimeLimit, res.Status, "the RLIMIT_CPU backstop ends it")
	assert.Equal(t, syscall.SIGXCPU, res.Signal)
	assert.GreaterOrEqual(t, res.CPUTime, time.Second)
	assert.Equal(t, map[string]string{
		"CPUTime": "rlimit", "Memory": "rlimit", "Pids": "none", "OpenFiles": "rlimit", "Stack": "rlimit",
		"WallTime": "watchdog", "Output": "watchdog", "Disk": "tmpfs",
	}, res.Enforced)

	// Strict refuses only limits the caller set: the default Pids limit
	// alone does not stop a run.
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"true"}, Limits: sandbox.Limits{Strict: true}})
	assert.Equal(t, sandbox.OK, res.Status)
	_, err := (&sandbox.Cmd{Image: img, Args: []string{"true"}, Limits: sandbox.Limits{Strict: true, Pids: 10}}).Run(context.Background())
	assert.ErrorIs(t, err, fs.ErrInvalid)

	// Strict refuses before anything runs.
	_, err = helperCmd(t, sandbox.Limits{Memory: 64 << 20, Strict: true}, "loop").Run(context.Background())
	var ce *sandbox.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Limits.Strict", ce.Field)
	assert.Contains(t, ce.Reason, "need a cgroup")
}
