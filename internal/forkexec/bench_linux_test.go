package forkexec

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startTrue starts /bin/true with flags and waits for it, timing the
// stages: the clone, the setup up to the command's execve, and the rest.
func startTrue(b *testing.B, flags uintptr) (start, release, wait time.Duration) {
	t0 := time.Now()
	p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: flags, Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(b), Immediate: true})
	if err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	if err := p.Release(context.Background()); err != nil {
		b.Fatal(err)
	}
	t2 := time.Now()
	if _, err := p.Wait(); err != nil {
		b.Fatal(err)
	}
	return t1.Sub(t0), t2.Sub(t1), time.Since(t2)
}

// BenchmarkStart is init and /bin/true without any setup step, in each
// kind of new namespace, with the time of each stage: what the mechanism
// costs before any mount.
func BenchmarkStart(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root for namespaces")
	}
	for _, tc := range []struct {
		name  string
		flags uintptr
	}{
		{"none", 0},
		{"mnt", unix.CLONE_NEWNS},
		{"pid", unix.CLONE_NEWPID},
		{"ipc", unix.CLONE_NEWIPC},
		{"uts", unix.CLONE_NEWUTS},
		{"net", unix.CLONE_NEWNET},
		{"all", unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var s, r, w time.Duration
			b.ReportAllocs()
			for b.Loop() {
				ds, dr, dw := startTrue(b, tc.flags)
				s, r, w = s+ds, r+dr, w+dw
			}
			n := float64(b.N)
			b.ReportMetric(float64(s.Nanoseconds())/n, "clone-ns/op")
			b.ReportMetric(float64(r.Nanoseconds())/n, "to-exec-ns/op")
			b.ReportMetric(float64(w.Nanoseconds())/n, "to-reap-ns/op")
		})
	}
}

// BenchmarkStartDirect is BenchmarkStart/none with inits cloned from this
// process instead of the zygote.
func BenchmarkStartDirect(b *testing.B) {
	zygMu.Lock()
	off := zygoteOff
	zygoteOff = true
	if zyg != nil {
		zyg.close()
		zyg = nil
	}
	zygMu.Unlock()
	defer func() {
		zygMu.Lock()
		zygoteOff = off
		zygMu.Unlock()
	}()
	for b.Loop() {
		startTrue(b, 0)
	}
}

// BenchmarkOSExec is the floor: os/exec running /bin/true.
func BenchmarkOSExec(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
