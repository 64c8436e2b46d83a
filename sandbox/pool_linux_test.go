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

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

func newPool(t *testing.T, img rootfs.Image, size int, tmpl *sandbox.Cmd) *sandbox.Pool {
	t.Helper()
	p, err := sandbox.NewPool(img, size, tmpl)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// A pooled run gives the same Result as a cold run of the same program.
func TestPoolMatchesColdRuns(t *testing.T) {
	img, _ := busybox(t)
	pool := newPool(t, img, 2, nil)
	tests := []struct {
		name   string
		cmd    sandbox.Cmd
		stdout bool // compare stdout too
	}{
		{"pid, ppid, hostname, cwd, env", sandbox.Cmd{Args: []string{"sh", "-c", "echo $$ $PPID $(hostname) $(pwd) $FOO; id -u; env | sort"}, Env: []string{"FOO=bar"}, Dir: "/etc"}, true},
		{"processes and mounts", sandbox.Cmd{Args: []string{"sh", "-c", "set -- /proc/[0-9]*; echo $@; cut -d' ' -f5 /proc/self/mountinfo | sort"}}, true},
		{"stdin", sandbox.Cmd{Args: []string{"tr", "a-z", "A-Z"}, Stdin: strings.NewReader("")}, true},
		{"exit code", sandbox.Cmd{Args: []string{"sh", "-c", "exit 9"}}, true},
		{"signal", sandbox.Cmd{Args: []string{"sh", "-c", "kill -SEGV $$"}}, true},
		{"missing file", sandbox.Cmd{Args: []string{"cat", "/nope"}}, false},
		{"output limit", sandbox.Cmd{Args: []string{"yes"}, Limits: sandbox.Limits{Output: 1 << 16}}, true},
		{"wall time", sandbox.Cmd{Args: []string{"sleep", "10"}, Limits: sandbox.Limits{WallTime: 200 * time.Millisecond}}, false},
		{"cpu time", sandbox.Cmd{Args: []string{"sh", "-c", "while :; do :; done"}, Limits: sandbox.Limits{CPUTime: 300 * time.Millisecond}}, false},
		{"memory", sandbox.Cmd{Args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"}, Limits: sandbox.Limits{Memory: 16 << 20}}, false},
		{"file size", sandbox.Cmd{Args: []string{"dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=8"}, Limits: sandbox.Limits{FileSize: 1 << 20}}, false},
		{"rlimits", sandbox.Cmd{Args: []string{"sh", "-c", "ulimit -n; ulimit -s"}, Limits: sandbox.Limits{OpenFiles: 77, Stack: 4 << 20}}, true},
		// Capability sets (a reused sandbox's init drops the commands'
		// bounding set once), no_new_privs, seccomp.
		{"hardening", sandbox.Cmd{Args: []string{"sh", "-c", "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cold := tt.cmd
			cold.Image = img
			if tt.cmd.Stdin != nil { // a reader for each run
				cold.Stdin, tt.cmd.Stdin = strings.NewReader("pooled"), strings.NewReader("pooled")
			}
			want := run(t, &cold)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := pool.Run(ctx, &tt.cmd)
			require.NoError(t, err)
			assert.Equal(t, want.Status, got.Status)
			assert.Equal(t, want.ExitCode, got.ExitCode)
			assert.Equal(t, want.Signal, got.Signal)
			assert.Equal(t, want.Enforced, got.Enforced)
			if tt.stdout {
				assert.Equal(t, string(want.Stdout), string(got.Stdout))
			}
		})
	}
}

// Nothing of one pooled run is seen by the next.
func TestPoolRunsAreFresh(t *testing.T) {
	img, _ := busybox(t)
	pool := newPool(t, img, 1, &sandbox.Cmd{Credential: &sandbox.Credential{}})
	ctx := context.Background()
	for i := range 4 {
		res, err := pool.Run(ctx, &sandbox.Cmd{Args: []string{"sh", "-c",
			"ls -A /tmp; cat /run-marker 2>/dev/null; echo mark > /tmp/m; echo mark > /run-marker; sleep 100 & echo $$"}})
		require.NoError(t, err)
		assert.Equal(t, "2\n", string(res.Stdout), "run %d saw an earlier run's files, or is not pid 2", i)
	}
}

// A sandbox whose run left nothing behind serves the next run, which sees
// nothing of it either; one whose run left a file is thrown away.
func TestPoolReusesCleanSandboxes(t *testing.T) {
	img, _ := busybox(t)
	pool := newPool(t, img, 1, nil)
	ctx := context.Background()
	// The command and the first process it starts are PIDs 2 and 3, and
	// nothing is left in the writable directories.
	const probe = `echo /proc/[0-9]*; sh -c 'echo $$'; grep -o 'TCP: inuse [0-9]* orphan [0-9]* tw [0-9]*' /proc/net/sockstat; ls -A /tmp; ls -A /dev/shm; ls /; `
	const want = "/proc/1 /proc/2\n3\nTCP: inuse 0 orphan 0 tw 0\nbin\ndev\netc\nproc\nroot\nsbin\ntmp\nusr\n"
	for i, tt := range []struct {
		leave  string
		reused bool // the run's sandbox serves the next one
	}{
		{"sleep 100 & sleep 100 &", true},    // processes: killed
		{"exec 3>&-", true},                  // nothing
		{"echo x > /tmp/f", false},           // a file
		{"mkdir /tmp/d; rmdir /tmp/d", true}, // a file made and removed
		{"echo x > /dev/shm/f", false},       // a file
		{"sh -c 'sleep 100 &' & wait", true}, // an orphan: killed
		{"nc -l -p 7000 -e true & sleep 0.1; nc 127.0.0.1 7000 </dev/null", false}, // a connection in TIME_WAIT
		{"nc -l -p 7001 & sleep 0.05", true},                                       // a listener: closed with its process
		{"true", true},
	} {
		before := pool.Stats()
		res, err := pool.Run(ctx, &sandbox.Cmd{Args: []string{"sh", "-c", probe + tt.leave}})
		require.NoError(t, err)
		require.Equal(t, sandbox.OK, res.Status, "run %d: %s", i, res.Stderr)
		assert.Equal(t, want, string(res.Stdout), "run %d: something of the run before is left", i)
		_, err = pool.Run(ctx, &sandbox.Cmd{Args: []string{"true"}})
		require.NoError(t, err)
		after := pool.Stats()
		assert.Equal(t, before.Runs+2, after.Runs)
		wantReused := before.Reused
		if tt.reused && poolReuses() {
			wantReused++
		}
		if before.Runs > 0 && poolReuses() {
			wantReused++ // the probe's own sandbox, left clean by the last run of the loop
		}
		assert.Equal(t, wantReused, after.Reused, "run %d (%s)", i, tt.leave)
	}

	// The run's own binds (root's) go with it, the targets init made
	// included.
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		for range 2 {
			res, err := pool.Run(ctx, &sandbox.Cmd{Args: []string{"ls", "/"}, Binds: []sandbox.Bind{{Source: dir, Target: "/work"}}})
			require.NoError(t, err)
			assert.Equal(t, "bin\ndev\netc\nproc\nroot\nsbin\ntmp\nusr\nwork\n", string(res.Stdout))
		}
		before := pool.Stats()
		res, err := pool.Run(ctx, &sandbox.Cmd{Args: []string{"ls", "/"}})
		require.NoError(t, err)
		assert.Equal(t, "bin\ndev\netc\nproc\nroot\nsbin\ntmp\nusr\n", string(res.Stdout))
		if poolReuses() {
			assert.Equal(t, before.Reused+1, pool.Stats().Reused)
		}
	}

	// A command that runs as init's uid could change what init's next
	// command inherits (its rlimits, priority): its sandbox serves once.
	rootPool := newPool(t, img, 1, &sandbox.Cmd{Credential: &sandbox.Credential{}})
	for range 3 {
		_, err := rootPool.Run(ctx, &sandbox.Cmd{Args: []string{"true"}})
		require.NoError(t, err)
	}
	assert.Equal(t, sandbox.PoolStats{Runs: 3}, rootPool.Stats())
}

// IPC objects are the run's own, also in a sandbox that serves again.
func TestPoolRunsHaveTheirOwnIPC(t *testing.T) {
	tmpl := helperCmd(t, sandbox.Limits{}, "shm")
	pool := newPool(t, tmpl.Image, 1, &sandbox.Cmd{Binds: tmpl.Binds})
	for i := range 3 {
		res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"/helper"}, Env: tmpl.Env})
		require.NoError(t, err)
		require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		assert.Equal(t, "0\n", string(res.Stdout), "run %d saw a segment of the run before", i)
	}
	if poolReuses() {
		assert.Equal(t, sandbox.PoolStats{Runs: 3, Reused: 2}, pool.Stats(), "the sandbox served every run")
	}
}

// A pool's filter decides every call as a cold run's: also the calls its
// inits go on making, which a reused sandbox's init lets through and each
// command's own part of the filter decides (see forkexec.ReusableSyscalls).
func TestPoolSyscallFilter(t *testing.T) {
	img, _ := busybox(t)
	// kill is one of those calls (the default allows it), unshare too
	// (the default denies it), chmod not.
	filter := &sandbox.SyscallFilter{Deny: []string{"kill", "chmod", "fchmodat"}}
	script := "kill -0 $$ 2>/dev/null; echo kill $?; unshare -n true 2>/dev/null; echo unshare $?; " +
		"chmod 700 /tmp 2>/dev/null; echo chmod $?; sleep 0 & wait; echo fork $?"
	cold := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", script}, Syscalls: filter})
	assert.Equal(t, "kill 1\nunshare 1\nchmod 1\nfork 0\n", string(cold.Stdout), "stderr: %s", cold.Stderr)
	pool := newPool(t, img, 1, &sandbox.Cmd{Syscalls: filter})
	for i := range 3 {
		res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"sh", "-c", script}})
		require.NoError(t, err)
		assert.Equal(t, string(cold.Stdout), string(res.Stdout), "run %d; stderr: %s", i, res.Stderr)
	}
	if poolReuses() {
		assert.Equal(t, sandbox.PoolStats{Runs: 3, Reused: 2}, pool.Stats(), "the sandbox served every run")
	}
}

// poolReuses says whether a pool's sandboxes serve more than one run here:
// a root caller's do, with the default user; a user namespace's root is
// init's own uid. (And the kernel must have ns_last_pid.)
func poolReuses() bool {
	_, err := os.Stat("/proc/sys/kernel/ns_last_pid")
	return os.Geteuid() == 0 && err == nil
}

func TestPoolAccuracy(t *testing.T) {
	requireQuiet(t)
	requireCgroups(t)
	img := rootfs.Host()
	requireSandbox(t, img)
	tmpl := helperCmd(t, sandbox.Limits{}, "spin")
	pool := newPool(t, tmpl.Image, 1, &sandbox.Cmd{Binds: tmpl.Binds})
	c := &sandbox.Cmd{Args: []string{"/helper", "1", "300"}, Env: tmpl.Env, Limits: sandbox.Limits{WallTime: time.Minute}}
	res, err := pool.Run(context.Background(), c)
	require.NoError(t, err)
	require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
	own, err := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, float64(own), float64(res.CPUTime), float64(max(time.Duration(own)/50, 10*time.Millisecond)*timingSlack()))

	bb, _ := busybox(t)
	ddPool := newPool(t, bb, 1, nil)
	for _, n := range []int64{16, 64} {
		res, err := ddPool.Run(context.Background(), &sandbox.Cmd{Args: []string{"dd", "if=/dev/zero", "of=/dev/null", fmt.Sprintf("bs=%dM", n), "count=1"},
			Limits: sandbox.Limits{Memory: (n + 32) << 20}})
		require.NoError(t, err)
		assert.Equal(t, sandbox.OK, res.Status)
		assert.InDelta(t, n<<20, res.MemoryPeak, 2<<20)
		res, err = ddPool.Run(context.Background(), &sandbox.Cmd{Args: []string{"dd", "if=/dev/zero", "of=/dev/null", fmt.Sprintf("bs=%dM", n), "count=1"},
			Limits: sandbox.Limits{Memory: (n - 1) << 20}})
		require.NoError(t, err)
		assert.Equal(t, sandbox.MemoryLimit, res.Status)
		assert.Equal(t, syscall.SIGKILL, res.Signal)
	}
}

func TestPoolErrors(t *testing.T) {
	img, _ := busybox(t)
	_, err := sandbox.NewPool(img, 0, nil)
	assert.Error(t, err)
	pool := newPool(t, img, 1, nil)
	_, err = pool.Run(context.Background(), &sandbox.Cmd{Image: img, Args: []string{"true"}})
	assert.Error(t, err, "the image is the pool's")
	_, err = pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"no-such-command"}})
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "execve", se.Stage)
	_, err = pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"true"}, Dir: "/no/such/dir"})
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "chdir", se.Stage, "as a cold run's")
	assert.Equal(t, "/no/such/dir", se.Path)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"true"}})
	require.NoError(t, err, "the pool goes on after a failed run")
	assert.Equal(t, sandbox.OK, res.Status)
	require.NoError(t, pool.Close())
	_, err = pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"true"}})
	assert.ErrorIs(t, err, sandbox.ErrClosed)
}

func TestPoolCloseLeavesNothing(t *testing.T) {
	img, _ := busybox(t)
	sh(t, img, "true")
	before := settledSnapshot(t)
	pool, err := sandbox.NewPool(img, 3, nil)
	require.NoError(t, err)
	for range 10 {
		_, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"sh", "-c", "sleep 100 & true"}})
		require.NoError(t, err)
	}
	// A run that ends clean after Close: nobody takes its sandbox back.
	done := make(chan error)
	go func() {
		res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"sleep", "0.3"}})
		if err == nil && res.Status != sandbox.OK {
			err = fmt.Errorf("status %v", res.Status)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, pool.Close())
	require.NoError(t, <-done)
	st := pool.Stats()
	assert.Equal(t, int64(11), st.Runs)
	if poolReuses() {
		assert.GreaterOrEqual(t, st.Reused, st.Runs-3, "every run but the first of each of the 3 sandboxes was served by one an earlier run left")
	}
	var after snapshot
	for range 50 {
		if after = takeSnapshot(t); after == before {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, before, after)
	assertNetnsBounded(t)
}

func TestPoolPerRunBinds(t *testing.T) {
	testenvRequireRoot(t)
	img, _ := busybox(t)
	pool := newPool(t, img, 1, nil)
	for i := range 3 {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte(fmt.Sprint(i)), 0o644))
		res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"sh", "-c", "cat /work/f; echo x > /work/g 2>/dev/null || echo read-only; ls /work"},
			Binds: []sandbox.Bind{{Source: dir, Target: "/work"}}})
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("%dread-only\nf\n", i), string(res.Stdout), "stderr: %s", res.Stderr)
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o777))
	res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"sh", "-c", "echo out > /out/g"},
		Binds: []sandbox.Bind{{Source: dir, Target: "/out", Writable: true}}})
	require.NoError(t, err)
	assert.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
	assert.FileExists(t, filepath.Join(dir, "g"))

	// As many binds as a request takes: each is a descriptor in one message.
	var binds []sandbox.Bind
	for i := range 16 {
		binds = append(binds, sandbox.Bind{Source: dir, Target: fmt.Sprintf("/b%d", i)})
	}
	res, err = pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"cat", "/b0/g", "/b15/g"}, Binds: binds})
	require.NoError(t, err)
	assert.Equal(t, "out\nout\n", string(res.Stdout), "stderr: %s", res.Stderr)
}

func testenvRequireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("per-run binds in a pool need root")
	}
}
