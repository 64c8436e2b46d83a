//go:build linux && !amd64

package forkexec

import "syscall"

// forkFlags: a plain fork where no vfork-safe clone is written.
const forkFlags = 0

// rawVfork is a plain clone(flags).
//
//go:nosplit
func rawVfork(flags uintptr) (pid uintptr, errno uintptr) {
	r1, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	return r1, uintptr(e)
}
