//go:build unix

package sandbox

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// signalName returns the signal's conventional name, e.g. "SIGKILL".
func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return s.String()
}
