//go:build linux && !amd64

package forkexec

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkFlags: a plain fork where no vfork-safe clone is written.
const forkFlags = 0

// rawVfork is a plain clone(flags).
//
//go:nosplit
func rawVfork(flags uintptr) (pid uintptr, errno uintptr) {
	r1, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	return r1, uintptr(e)
}

// rawVfork3 is a plain clone3(args, size).
//
//go:nosplit
func rawVfork3(args unsafe.Pointer, size uintptr) (pid uintptr, errno uintptr) {
	r1, _, e := syscall.RawSyscall(unix.SYS_CLONE3, uintptr(args), size, 0)
	return r1, uintptr(e)
}

// haveZygote: no zygote where rawCloneOn is not written.
const haveZygote = false

func rawCloneOn(flags, stack, ptid uintptr, fn uintptr, arg unsafe.Pointer) (pid uintptr, errno uintptr) {
	return 0, uintptr(syscall.ENOSYS)
}

func zygoteEntryPC() uintptr { return 0 }

func initEntryPC() uintptr { return 0 }
