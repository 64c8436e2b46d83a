package seccomp

import "golang.org/x/sys/unix"

const (
	// auditArch is the seccomp_data.arch value of the native ABI.
	auditArch = unix.AUDIT_ARCH_AARCH64
	// x32Bit is zero: arm64 has no second ABI sharing its audit arch
	// (32-bit ARM tasks arrive as AUDIT_ARCH_ARM and are killed).
	x32Bit = 0
)
