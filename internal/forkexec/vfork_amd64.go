//go:build linux

package forkexec

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkFlags are the clone flags init forks the command with: on amd64 a
// vfork (no copy of init's page tables, which are a copy of the caller's
// whole address space), see rawVfork.
const forkFlags = unix.CLONE_VM | unix.CLONE_VFORK

// rawVfork is clone(flags|SIGCHLD) made safe for CLONE_VM|CLONE_VFORK.
//
//go:noescape
func rawVfork(flags uintptr) (pid uintptr, errno uintptr)

// rawVfork3 is clone3(args, size) made safe for CLONE_VM|CLONE_VFORK.
//
//go:noescape
func rawVfork3(args unsafe.Pointer, size uintptr) (pid uintptr, errno uintptr)

// rawCloneOn is clone(flags, stack, ptid) whose child calls the ABI0
// function at fn with arg on that stack, and exits if it returns.
//
//go:noescape
func rawCloneOn(flags, stack, ptid uintptr, fn uintptr, arg unsafe.Pointer) (pid uintptr, errno uintptr)

// zygoteEntryPC is zygoteEntry's ABI0 entry, for rawCloneOn.
func zygoteEntryPC() uintptr

// initEntryPC is initEntry's ABI0 entry, for rawCloneOn.
func initEntryPC() uintptr

// haveZygote: the zygote needs rawCloneOn.
const haveZygote = true
