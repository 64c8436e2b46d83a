package ns

import (
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/internal/mknetns"
)

// newNetwork makes a network namespace (as hutch run does, see
// internal/mknetns) and returns it. Without root the test is skipped.
func newNetwork(t *testing.T) *os.File {
	t.Helper()
	fd := mknetns.Make()
	if fd < 0 {
		if os.Geteuid() == 0 {
			t.Fatal("root could not make a network namespace")
		}
		t.Skip("cannot make a network namespace without root")
	}
	return os.NewFile(uintptr(fd), "netns")
}

func TestNetworkEmpty(t *testing.T) {
	f := newNetwork(t)
	defer f.Close()
	if !NetworkEmpty(f) {
		t.Fatal("a new namespace is not empty")
	}
	// A socket bound in it makes it not empty.
	s := socketIn(t, f)
	if NetworkEmpty(f) {
		t.Fatal("a namespace with a socket is empty")
	}
	unix.Close(s)
	if !NetworkEmpty(f) {
		t.Fatal("the namespace is not empty after its only socket closed")
	}
}

// SocketCounts opened once say what the namespace holds at each Zero.
func TestSocketCounts(t *testing.T) {
	f := newNetwork(t)
	defer f.Close()
	var (
		c   *SocketCounts
		err error
	)
	inNetwork(t, f, func() { c, err = OpenSocketCounts(unix.Gettid()) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Zero() {
		t.Fatal("a new namespace is not empty")
	}
	s := socketIn(t, f)
	if c.Zero() {
		t.Fatal("a namespace with a socket is empty")
	}
	unix.Close(s)
	if !c.Zero() {
		t.Fatal("the namespace is not empty after its only socket closed")
	}
	// The host's, with a socket of this process in it.
	h, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(h)
	hc, err := OpenSocketCounts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if hc.Zero() {
		t.Fatal("the host's namespace, with a socket in it, is empty")
	}
}

// socketIn opens a socket in the network namespace f.
func socketIn(t *testing.T, f *os.File) int {
	t.Helper()
	var (
		s   int
		err error
	)
	inNetwork(t, f, func() { s, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// inNetwork calls fn on a thread that is in the network namespace f for
// the time of the call. A thread that cannot go back stays locked, and
// ends with the test's goroutine.
func inNetwork(t *testing.T, f *os.File, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
}

// A recycled namespace is checked in the background; TakeNetwork right
// after waits for the check, and gets the namespace only if it is empty.
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
	if TakeNetwork() != nil {
		t.Fatal("a namespace was handed out twice")
	}
	s := socketIn(t, g)
	defer unix.Close(s)
	RecycleNetwork(g)
	if h := TakeNetwork(); h != nil {
		h.Close()
		t.Fatal("a namespace holding a socket was kept")
	}
}

// A namespace being made elsewhere (AwaitNetwork) is waited for by the
// next TakeNetwork, which gets it; one that could not be made leaves the
// cache empty, and TakeNetwork no longer waits.
func TestAwaitNetwork(t *testing.T) {
	for f := TakeNetwork(); f != nil; f = TakeNetwork() {
		f.Close()
	}
	want := newNetwork(t)
	made := make(chan int)
	AwaitNetwork(made)
	taken := make(chan *os.File)
	go func() { taken <- TakeNetwork() }()
	select {
	case f := <-taken:
		t.Fatalf("TakeNetwork did not wait for the namespace being made (got %v)", f)
	case <-time.After(50 * time.Millisecond):
	}
	fd, err := unix.Dup(int(want.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	made <- fd
	got := <-taken
	if got == nil {
		t.Fatal("the namespace made was not handed out")
	}
	defer got.Close()
	if inode(t, got) != inode(t, want) {
		t.Fatal("TakeNetwork handed out another namespace")
	}
	want.Close()

	none := make(chan int, 1)
	none <- -1
	AwaitNetwork(none)
	if f := TakeNetwork(); f != nil {
		f.Close()
		t.Fatal("a namespace that was not made was handed out")
	}
}

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
