//go:build linux

package main

import "golang.org/x/sys/unix"

const haveInt80 = true

// int80 makes the i386 system call nr through int 0x80 and returns eax:
// the result, or -errno.
//
//go:noescape
func int80(nr, a1, a2, a3, a4, a5 uintptr) uintptr

// low32Page maps a page below 4 GiB, where an i386 system call's 32-bit
// pointers can reach. It is never unmapped.
func low32Page() ([]byte, error) {
	return unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_32BIT)
}
