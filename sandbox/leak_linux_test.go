package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/state"
	"github.com/hutchbox/hutch/sandbox"
)

// snapshot is what a run could leak: mounts, processes, descriptors and
// files in the state directory.
type snapshot struct {
	mounts, children, fds, stateEntries, cgroups int
}

// settledSnapshot is takeSnapshot once two in a row agree: what an
// earlier run left to finish in the background (the check of its network
// namespace, with a file open for microseconds) has finished.
func settledSnapshot(t *testing.T) snapshot {
	t.Helper()
	s := takeSnapshot(t)
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		next := takeSnapshot(t)
		if next == s {
			break
		}
		s = next
	}
	return s
}

// assertNetnsBounded checks that the network namespaces this process
// holds, the empty ones kept for later runs, are at most 2 per CPU once
// the checks of those offered last are over: a check in flight holds one
// more, and its thread's own.
func assertNetnsBounded(t *testing.T) {
	t.Helper()
	held := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		n := 0
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(l, "net:[") {
				n++
			}
		}
		return n
	}
	most := 2 * runtime.GOMAXPROCS(0)
	n := held()
	for i := 0; i < 50 && n > most; i++ {
		time.Sleep(20 * time.Millisecond)
		n = held()
	}
	assert.LessOrEqual(t, n, most, "cached network namespaces")
}

func takeSnapshot(t *testing.T) snapshot {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	// Network namespaces kept for later runs are held on purpose, a
	// bounded number: see assertNetnsBounded.
	var nfds int
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); !strings.HasPrefix(l, "net:[") {
			nfds++
		}
	}
	// Only this process's entries: other test binaries may run at once.
	mine := fmt.Sprintf("-%d-", os.Getpid())
	var entries int
	filepath.Walk(state.Dir(), func(p string, _ os.FileInfo, _ error) error {
		if strings.Contains(filepath.Base(p), mine) {
			entries++
		}
		return nil
	})
	var cgroups int
	for _, pattern := range []string{"/sys/fs/cgroup/hutch/*" + mine + "*", "/sys/fs/cgroup/*/hutch/*" + mine + "*"} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				cgroups++
			}
		}
	}
	return snapshot{
		cgroups:      cgroups,
		mounts:       strings.Count(string(mi), "\n"),
		children:     countChildren(t),
		fds:          nfds,
		stateEntries: entries,
	}
}

// countChildren counts the processes whose parent is this one.
func countChildren(t *testing.T) int {
	t.Helper()
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	me := fmt.Sprint(os.Getpid())
	n := 0
	for _, p := range procs {
		b, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == me {
			n++
		}
	}
	return n
}

func TestNothingLeaks(t *testing.T) {
	img, _ := busybox(t)
	// Warm up: the state directory and the runtime's own threads and
	// descriptors settle after the first runs.
	sh(t, img, "true")
	before := settledSnapshot(t)

	kinds := []func() error{
		func() error { // ok
			_, err := sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{})
			return err
		},
		func() error { // daemonized grandchild and a wall-time kill
			_, err := sandbox.Run(context.Background(), img, []string{"sh", "-c", "setsid sleep 100 & sleep 100"}, sandbox.Limits{WallTime: 50 * time.Millisecond})
			return err
		},
		func() error { // output flood
			_, err := sandbox.Run(context.Background(), img, []string{"yes"}, sandbox.Limits{Output: 64 << 10})
			return err
		},
		func() error { // setup error
			_, err := sandbox.Run(context.Background(), img, []string{"no-such-command"}, sandbox.Limits{})
			if err == nil {
				return fmt.Errorf("missing command ran")
			}
			return nil
		},
		func() error { // cancel
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			sandbox.Run(ctx, img, []string{"sleep", "100"}, sandbox.Limits{})
			return nil
		},
		func() error { // memory limit
			_, err := sandbox.Run(context.Background(), img, []string{"sh", "-c", "x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo ${#x}"}, sandbox.Limits{Memory: 2 << 20})
			return err
		},
		func() error { // bad argument
			sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{Disk: -1})
			return nil
		},
		func() error { // stdin from a reader the command never reads
			_, err := (&sandbox.Cmd{Image: img, Args: []string{"true"}, Stdin: strings.NewReader(strings.Repeat("x", 1<<20))}).Run(context.Background())
			return err
		},
	}
	n := 300
	if testing.Short() {
		n = 60
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := kinds[i%len(kinds)](); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The stdin copier of a reader that was never drained may still be
	// finishing; give goroutines a moment, then compare.
	var after snapshot
	for range 50 {
		after = takeSnapshot(t)
		if after == before {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, before, after)
	assertNetnsBounded(t)
}

// Collecting garbage (as every process using hutch does once, and `hutch
// gc` on demand) while runs start must never take a live run's lock.
func TestCollectGarbageBesideRuns(t *testing.T) {
	requireCgroups(t)
	img, _ := busybox(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				sandbox.CollectGarbage()
			}
		}
	}()
	for i := range 100 {
		res, err := sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{})
		if !assert.NoError(t, err, "run %d", i) {
			break
		}
		assert.Equal(t, sandbox.OK, res.Status)
	}
	close(stop)
	wg.Wait()
}

// 10,000 runs, two at a time, leave the caller as they found it: no more
// goroutines or descriptors, and no more live heap, than after a warm-up.
// (About 20 s; skipped under -short.)
func TestNoGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 runs")
	}
	img, _ := busybox(t)
	cold := func() (*sandbox.Result, error) {
		return sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{})
	}
	t.Run("cold", func(t *testing.T) { testNoGrowth(t, cold) })
	// A pool's sandboxes serve run after run: neither their inits nor this
	// process may keep anything of each.
	pool := newPool(t, img, 2, nil)
	pooled := func() (*sandbox.Result, error) {
		return pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"true"}})
	}
	t.Run("pooled", func(t *testing.T) {
		testNoGrowth(t, pooled)
		if poolReuses() {
			assert.Greater(t, pool.Stats().Reused, int64(9000), "most runs reuse a sandbox")
		}
	})
}

func testNoGrowth(t *testing.T, runOne func() (*sandbox.Result, error)) {
	run := func(n int) {
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 2 {
					res, err := runOne()
					if err != nil || res.Status != sandbox.OK {
						t.Errorf("run %d: %v %v", i, err, res)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	type usage struct {
		goroutines, fds, initFDs int
		heap                     uint64
	}
	measure := func() usage {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fds, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return usage{runtime.NumGoroutine(), len(fds), initFDs(t), ms.HeapAlloc}
	}
	run(200)
	before := measure()
	run(10000)
	var after usage
	for range 50 { // what the last runs started may still be finishing
		if after = measure(); after.goroutines <= before.goroutines && after.fds <= before.fds && after.initFDs <= before.initFDs {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("before %+v, after %+v", before, after)
	assert.LessOrEqual(t, after.goroutines, before.goroutines, "goroutines")
	assert.LessOrEqual(t, after.fds, before.fds, "descriptors")
	assert.LessOrEqual(t, after.initFDs, before.initFDs, "descriptors of this process's inits")
	assert.Less(t, after.heap, before.heap+1<<20, "live heap grew by more than 1 MiB")
}

// initFDs counts the open descriptors of this process's sandbox inits.
func initFDs(t *testing.T) int {
	n := 0
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	self := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil || !strings.Contains(string(stat), "(hutch-init)") {
			continue
		}
		// The zygote clones inits as this process's children.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != self {
			continue
		}
		if fds, err := os.ReadDir("/proc/" + p.Name() + "/fd"); err == nil {
			n += len(fds)
		}
	}
	return n
}
