package sandbox

import (
	"bytes"
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

// netnsCache holds provably empty network namespaces.
var netnsCache = struct {
	sync.Mutex
	free []*os.File
}{}

// maxCachedNetns bounds the cache: enough for every run at once.
func maxCachedNetns() int { return 2 * runtime.GOMAXPROCS(0) }

// takeNetns returns a cached network namespace, or nil.
func takeNetns() *os.File {
	netnsCache.Lock()
	defer netnsCache.Unlock()
	n := len(netnsCache.free)
	if n == 0 {
		return nil
	}
	f := netnsCache.free[n-1]
	netnsCache.free = netnsCache.free[:n-1]
	return f
}

// recycleNetns keeps f for a later run if it is provably empty, or closes
// it (the kernel then destroys the namespace). Every process that was in it
// must be gone.
func recycleNetns(f *os.File) {
	if f == nil {
		return
	}
	netnsCache.Lock()
	full := len(netnsCache.free) >= maxCachedNetns()
	netnsCache.Unlock()
	if full || !netnsEmpty(f) {
		f.Close()
		return
	}
	netnsCache.Lock()
	defer netnsCache.Unlock()
	if len(netnsCache.free) >= maxCachedNetns() {
		f.Close()
		return
	}
	netnsCache.free = append(netnsCache.free, f)
}

// socketCounts are the /proc/net files that count a namespace's sockets:
// "sockets: used N" counts every family; TCP's "tw N" the connections in
// TIME_WAIT, which are no longer sockets. (Listing the sockets instead, in
// /proc/net/tcp and the like, walks tables shared by every namespace: fifty
// times slower.)
var socketCounts = []string{"sockstat", "sockstat6"}

// netnsEmpty reports whether the namespace has no socket at all. It reads
// the socket tables from a thread that joined the namespace for the time
// of the reads.
func netnsEmpty(f *os.File) bool {
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
	empty := true
	buf := make([]byte, 1024)
	for _, name := range socketCounts {
		fd, err := unix.Open("/proc/thread-self/net/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if name == "sockstat" {
				empty = false
			}
			continue // no IPv6
		}
		n, _ := unix.Read(fd, buf)
		unix.Close(fd)
		if !countsZero(buf[:n]) {
			empty = false
			break
		}
	}
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the other namespace: keep it locked, so that
		// it ends with this goroutine and no other code runs on it.
		return false
	}
	runtime.UnlockOSThread()
	return empty
}

// openNetns opens the network namespace of process pid.
func openNetns(pid int) *os.File {
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
