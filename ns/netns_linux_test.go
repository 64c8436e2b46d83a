package ns

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// newNetwork makes a network namespace on a locked thread and returns it.
func newNetwork(t *testing.T) *os.File {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("cannot make a network namespace: %v", err)
	}
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestNetworkEmpty(t *testing.T) {
	f := newNetwork(t)
	defer f.Close()
	if !NetworkEmpty(f) {
		t.Fatal("a new namespace is not empty")
	}
	// A socket bound in it makes it not empty.
	runtime.LockOSThread()
	orig, _ := os.Open("/proc/thread-self/ns/net")
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET)
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	if NetworkEmpty(f) {
		t.Fatal("a namespace with a socket is empty")
	}
	unix.Close(s)
	if !NetworkEmpty(f) {
		t.Fatal("the namespace is not empty after its only socket closed")
	}
}

func TestRecycle(t *testing.T) {
	for f := TakeNetwork(); f != nil; f = TakeNetwork() {
		f.Close()
	}
	f := newNetwork(t)
	RecycleNetwork(f)
	g := TakeNetwork()
	if g == nil {
		t.Fatal("an empty namespace was not kept")
	}
	g.Close()
	if TakeNetwork() != nil {
		t.Fatal("a namespace was handed out twice")
	}
}
