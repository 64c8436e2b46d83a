// Package early starts making the network namespace of the sandbox that
// "hutch run" starts while the rest of the program initializes. It
// depends on little, so Go runs its initializer among the program's
// first, and the namespace, the costliest part of a sandbox's clone, is
// made on another thread, and CPU, while the other initializers run and
// main parses the flags and plans the run, which then joins it (see
// ns.AwaitNetwork).
package early

import (
	"syscall"

	"github.com/hutchbox/hutch/internal/mknetns"
)

// Netns receives the namespace being made, a descriptor or -1; nil when
// none is.
var Netns chan int

func init() {
	if syscall.Geteuid() != 0 || !isRun() {
		return
	}
	Netns = make(chan int, 1)
	go func() { Netns <- mknetns.Make() }()
}

// isRun says whether the program's first argument is "run" (os.Args is
// not set yet).
func isRun() bool {
	fd, err := syscall.Open("/proc/self/cmdline", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var buf [512]byte
	n, _ := syscall.Read(fd, buf[:])
	return n > 0 && firstArgIsRun(buf[:n])
}

// firstArgIsRun says whether the second of the NUL-terminated strings of
// cmdline is "run".
func firstArgIsRun(cmdline []byte) bool {
	for i, c := range cmdline {
		if c == 0 {
			rest := cmdline[i+1:]
			return len(rest) >= 4 && string(rest[:4]) == "run\x00"
		}
	}
	return false
}
