package ns

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Creating a network namespace is the most expensive part of a run's
// clone, and the kernel creates and destroys them under one global lock,
// so concurrent runs queue on it. A run's namespace holds nothing of the
// run once every process in it is gone and no socket is left (not even in
// TIME_WAIT): the command has no capability in it, so it could not change
// its interfaces, routes, firewall or sysctls. Such a provably empty
// namespace is kept and given to the next run, which joins it instead of
// making one. Its packet counters (lo's, /proc/net/snmp) are the one thing
// carried over. Only a root caller's runs share them: an unprivileged
// caller's namespaces belong to each run's own user namespace.

// cache holds provably empty network namespaces, and counts those on
// their way in: being checked (RecycleNetwork) or made elsewhere
// (AwaitNetwork).
var cache = struct {
	sync.Mutex
	free    []*os.File
	pending int
	settled *sync.Cond // a pending one was added or dropped
}{}

func init() { cache.settled = sync.NewCond(&cache.Mutex) }

// maxCachedNetns bounds the cache: enough for every run at once.
func maxCachedNetns() int { return 2 * runtime.GOMAXPROCS(0) }

// TakeNetwork returns a network namespace (an open /proc/PID/ns/net file)
// that an earlier run left provably empty, for a new run to join instead
// of making one, or nil when there is none. While one is being checked or
// made, it waits for it: a check takes far less than making one, and one
// being made has a head start. The caller owns the file.
func TakeNetwork() *os.File {
	cache.Lock()
	defer cache.Unlock()
	for len(cache.free) == 0 && cache.pending > 0 {
		cache.settled.Wait()
	}
	n := len(cache.free)
	if n == 0 {
		return nil
	}
	f := cache.free[n-1]
	cache.free = cache.free[:n-1]
	return f
}

// RecycleNetwork keeps the network namespace f for a later TakeNetwork if
// it is provably empty, or closes it (the kernel then destroys the
// namespace). Every process that was in it must be gone; the caller must
// not use f afterwards. The check runs in the background: a run's end
// does not wait for it, and the next run's start does only if it has not
// ended by then.
func RecycleNetwork(f *os.File) {
	if f == nil {
		return
	}
	if !addPending() {
		f.Close()
		return
	}
	go func() {
		if !NetworkEmpty(f) {
			f.Close()
			f = nil
		}
		settle(f)
	}()
}

// AwaitNetwork adds to the cache a network namespace being made
// elsewhere, which comes from made as a descriptor (-1 for none): the next
// TakeNetwork waits for it. The hutch command starts making its sandbox's
// namespace in one of its first package initializers, on another thread
// (internal/mknetns), so that the namespace, the costliest part of the
// sandbox's clone, is made on one CPU while the program starts on the
// other.
func AwaitNetwork(made <-chan int) {
	pending := addPending()
	go func() {
		var f *os.File
		if fd := <-made; fd >= 0 {
			f = os.NewFile(uintptr(fd), "netns")
		}
		if !pending {
			if f != nil {
				f.Close()
			}
			return
		}
		settle(f)
	}()
}

// addPending counts one more namespace on its way into the cache, unless
// the cache would then be over its bound.
func addPending() bool {
	cache.Lock()
	defer cache.Unlock()
	if len(cache.free)+cache.pending >= maxCachedNetns() {
		return false
	}
	cache.pending++
	return true
}

// settle ends a pending namespace's way: into the cache, or, nil, nowhere.
func settle(f *os.File) {
	cache.Lock()
	defer cache.Unlock()
	cache.pending--
	cache.settled.Broadcast()
	if f != nil {
		cache.free = append(cache.free, f)
	}
}

// socketCounts are the /proc/net files that count a namespace's sockets:
// "sockets: used N" counts every family; TCP's "tw N" the connections in
// TIME_WAIT, which are no longer sockets. (Listing the sockets instead, in
// /proc/net/tcp and the like, walks tables shared by every namespace: fifty
// times slower.)
var socketCounts = []string{"sockstat", "sockstat6"}

// NetworkEmpty reports whether the network namespace f has no socket at
// all, none in TIME_WAIT included. It reads the counts from a thread that
// joins the namespace for the time of the reads.
func NetworkEmpty(f *os.File) bool {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return false
	}
	defer orig.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return false
	}
	empty := socketsZero("/proc/thread-self/net/")
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the other namespace: keep it locked, so that
		// it ends with this goroutine and no other code runs on it.
		return false
	}
	runtime.UnlockOSThread()
	return empty
}

// socketsZero reports whether the socket counts in dir (a /proc/.../net/
// directory) are all 0.
func socketsZero(dir string) bool {
	c, err := openSocketCounts(dir)
	if err != nil {
		return false
	}
	defer c.Close()
	return c.Zero()
}

// SocketCounts reads the socket counts of one network namespace through
// its /proc files opened once: a check is then two reads, without a path
// lookup, an open and a close per file each time. The open files keep the
// namespace in being until Close.
type SocketCounts struct {
	fds []int
}

// OpenSocketCounts opens the socket counts of the network namespace of
// the live process pid, through /proc/PID/net.
func OpenSocketCounts(pid int) (*SocketCounts, error) {
	return openSocketCounts("/proc/" + strconv.Itoa(pid) + "/net/")
}

func openSocketCounts(dir string) (*SocketCounts, error) {
	c := &SocketCounts{}
	for _, name := range socketCounts {
		fd, err := unix.Open(dir+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if name == "sockstat" || !errors.Is(err, unix.ENOENT) {
				c.Close()
				return nil, &os.PathError{Op: "open", Path: dir + name, Err: err}
			}
			continue // no IPv6
		}
		c.fds = append(c.fds, fd)
	}
	return c, nil
}

// Zero reports whether the namespace holds no socket, none in TIME_WAIT
// included, as NetworkEmpty does.
func (c *SocketCounts) Zero() bool {
	var buf [1024]byte
	for _, fd := range c.fds {
		// A read at offset 0 makes the kernel print the counts anew.
		n, _ := unix.Pread(fd, buf[:], 0)
		if n <= 0 || !countsZero(buf[:n]) {
			return false
		}
	}
	return true
}

// Close closes the files.
func (c *SocketCounts) Close() error {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
	return nil
}

// OpenNetwork opens the network namespace of process pid, or returns nil.
func OpenNetwork(pid int) *os.File {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil
	}
	return f
}

// countsZero reports whether every "used", "inuse" and "tw" count in a
// sockstat file is 0.
func countsZero(b []byte) bool {
	f := bytes.Fields(b)
	for i := 0; i+1 < len(f); i++ {
		switch string(f[i]) {
		case "used", "inuse", "tw":
			if string(f[i+1]) != "0" {
				return false
			}
		}
	}
	return true
}
