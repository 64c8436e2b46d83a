// Package mknetns makes a network namespace for a sandbox to join. It
// depends on nothing but the runtime and the syscall package, so that a
// program can start one in one of its first package initializers (see
// cmd/hutch/internal/early): Go runs a package's initializer as soon as
// those of its dependencies have run.
package mknetns

import (
	"runtime"
	"syscall"
)

// Make makes a network namespace from a thread that is in it only for the
// time of the unshare, and returns a descriptor of it (close-on-exec), or
// -1 when it cannot (without CAP_SYS_ADMIN, say).
func Make() int {
	if sysSetns == 0 {
		return -1
	}
	runtime.LockOSThread()
	orig, err := syscall.Open("/proc/thread-self/ns/net", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1
	}
	defer syscall.Close(orig)
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1
	}
	fd, err := syscall.Open("/proc/thread-self/ns/net", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	if _, _, e := syscall.RawSyscall(sysSetns, uintptr(orig), syscall.CLONE_NEWNET, 0); e == 0 {
		runtime.UnlockOSThread()
	}
	// Otherwise the thread stays in the new namespace: it stays locked,
	// so that it ends with this goroutine and no other code runs on it.
	return fd
}
