package seccomp

import "golang.org/x/sys/unix"

const (
	// auditArch is the seccomp_data.arch value of the native ABI.
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks x32 ABI system calls, which arrive with the native
	// auditArch and their number ORed with this bit.
	x32Bit = 0x40000000
)
