package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// benchImage is a busybox root, made once per benchmark.
func benchImage(b *testing.B) rootfs.Image {
	b.Helper()
	img := rootfs.Dir(testenv.BusyboxRoot(b))
	if _, err := sandbox.Run(context.Background(), img, []string{"/bin/true"}, sandbox.Limits{}); err != nil {
		b.Skipf("this machine cannot sandbox: %v", err)
	}
	return img
}

func runTrue(b *testing.B, c *sandbox.Cmd) {
	res, err := c.Run(context.Background())
	if err != nil || res.Status != sandbox.OK {
		b.Fatal(err, res)
	}
}

// BenchmarkRun is a cold run of /bin/true: new namespaces, overlay root,
// cgroup with limits, seccomp, full Result.
func BenchmarkRun(b *testing.B) {
	img := benchImage(b)
	b.ReportAllocs()
	for b.Loop() {
		runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"}})
	}
}

// BenchmarkRunCustomFilter is BenchmarkRun with a filter of the caller's,
// as a judge gives each run: assembled once, by the first run.
func BenchmarkRunCustomFilter(b *testing.B) {
	img := benchImage(b)
	b.ReportAllocs()
	for b.Loop() {
		runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"},
			Syscalls: &sandbox.SyscallFilter{Deny: []string{"socket", "fork", "vfork"}}})
	}
}

// BenchmarkRunIdle is BenchmarkRun with the machine idle for 50 ms before
// each run, as when runs come one at a time (a judge between submissions,
// a test suite between tests): only the run is timed. Kernel paths that
// wait for an RCU grace period when they have not run for a while (moving
// a process between cgroups with cgroup.procs) show here, not in
// BenchmarkRun's back-to-back runs.
func BenchmarkRunIdle(b *testing.B) {
	img := benchImage(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		time.Sleep(50 * time.Millisecond)
		b.StartTimer()
		runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"}})
	}
}

// BenchmarkRunParallel is BenchmarkRun from GOMAXPROCS goroutines.
func BenchmarkRunParallel(b *testing.B) {
	img := benchImage(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"}})
		}
	})
}

// BenchmarkRunHostNetwork leaves out the network namespace, the single
// most expensive namespace to create.
func BenchmarkRunHostNetwork(b *testing.B) {
	img := benchImage(b)
	for b.Loop() {
		runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"}, Network: sandbox.NetworkHost})
	}
}

// BenchmarkSandboxCommand runs /bin/true in a long-lived sandbox: the
// cost of joining its namespaces and making the command's own cgroup.
func BenchmarkSandboxCommand(b *testing.B) {
	img := benchImage(b)
	sb, err := sandbox.New(context.Background(), img, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	b.ReportAllocs()
	for b.Loop() {
		runTrue(b, sb.Command("/bin/true"))
	}
}

// BenchmarkNewClose is the setup and teardown of a long-lived sandbox.
func BenchmarkNewClose(b *testing.B) {
	img := benchImage(b)
	b.ReportAllocs()
	for b.Loop() {
		sb, err := sandbox.New(context.Background(), img, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := sb.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunParallelHostNetwork is BenchmarkRunParallel without the
// network namespace.
func BenchmarkRunParallelHostNetwork(b *testing.B) {
	img := benchImage(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			runTrue(b, &sandbox.Cmd{Image: img, Args: []string{"/bin/true"}, Network: sandbox.NetworkHost})
		}
	})
}

// BenchmarkPoolRun is a pooled run of /bin/true: the sandbox was set up
// ahead, by one of the pool's goroutines.
func BenchmarkPoolRun(b *testing.B) {
	img := benchImage(b)
	pool, err := sandbox.NewPool(img, 2, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	b.ReportAllocs()
	for b.Loop() {
		res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"/bin/true"}})
		if err != nil || res.Status != sandbox.OK {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkPoolRunParallel is BenchmarkPoolRun from GOMAXPROCS goroutines.
func BenchmarkPoolRunParallel(b *testing.B) {
	img := benchImage(b)
	pool, err := sandbox.NewPool(img, 4, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := pool.Run(context.Background(), &sandbox.Cmd{Args: []string{"/bin/true"}})
			if err != nil || res.Status != sandbox.OK {
				b.Fatal(err, res)
			}
		}
	})
}
