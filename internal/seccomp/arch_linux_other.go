//go:build linux && !amd64 && !arm64

package seccomp

// The filter is built for amd64 and arm64 only. On other architectures
// every policy names unknown system calls and Build reports
// errors.ErrUnsupported.
const (
	auditArch = 0
	x32Bit    = 0
)

var syscallTable [0]sysEntry
