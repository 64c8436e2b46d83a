package forkexec

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Inits that share the caller's memory.
//
// A process that starts one sandbox and exits (the hutch command) clones
// that sandbox's init directly: a zygote, itself a copy of the process,
// would cost it more than it saves. But a direct clone copies the whole Go
// process, page tables and all, and then every page either side writes
// while init lives is copied again, with a TLB shootdown each time: the
// largest share of such a process's first run (0.8 ms of a command-line
// run). A process that opts in (ShareCallerMemory) lets its inits share
// its memory instead, as the zygote's inits share the zygote's: each on a
// stack and a copy of its request in a mapping of its own, unmapped once
// the init is reaped (the kernel ends every other process of a PID
// namespace, the command vforked on init's stack among them, before its
// init can be reaped).
//
// Such an init must not do to the caller what it does to its own copy of
// the process: blank the command line and environment (/proc/1/cmdline
// shows them to the sandbox) and set the OOM score (a score written by
// one process is written for every process that shares its memory). So
// the caller blanks its own command line and takes the commands' score
// itself, once, when it opts in: its inits, and their commands, inherit
// it. And the memory that init makes non-dumpable, to keep the command
// out of it, is the caller's: the caller's /proc files then belong to
// root, and it leaves no core dump.
//
// Only inits that would share the zygote's memory share the caller's: of
// a new PID namespace, without a user namespace (an unprivileged caller
// writes the ID maps of its inits, which it could not once one of them
// made it non-dumpable), not OwnMemory, not under the race detector.

// shareCaller is set by ShareCallerMemory.
var shareCaller atomic.Bool

// commandsOOMScore is the oom_score_adj of every command (Config.OOMScoreAdj),
// written to oomScorePath.
const (
	commandsOOMScore = "1000"
	oomScorePath     = "/proc/self/oom_score_adj"
)

// ShareCallerMemory makes the inits this process starts from now on share
// its memory where they can (see above), for a process that exists to run
// a sandbox: it is not undone. It first blanks the process's command line
// as /proc/PID/cmdline shows it, but for title (e.g. "hutch\x00run"),
// after copying os.Args, which pointed into it; and makes the process the
// OOM killer's first choice (oom_score_adj 1000), as Config.OOMScoreAdj
// makes every command. Call it before anything keeps a string of os.Args.
// Where it fails, nothing is shared, and the error says why.
func ShareCallerMemory(title string) error {
	if !haveZygote || raceEnabled {
		return errors.New("forkexec: inits cannot share the caller's memory on this architecture or under the race detector")
	}
	ae := argEnv()
	start, end := ae[0], ae[1]
	if end <= start {
		return errors.New("forkexec: cannot find this process's command line")
	}
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = strings.Clone(a)
	}
	os.Args = args
	blank := make([]byte, end-start)
	copy(blank[:len(blank)-1], title)
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = mem.WriteAt(blank, int64(start))
	mem.Close()
	if err != nil {
		return err
	}
	if err := os.WriteFile(oomScorePath, []byte(commandsOOMScore), 0); err != nil {
		return err
	}
	shareCaller.Store(true)
	return nil
}

// canShareCaller reports whether c's init may share the caller's memory.
func canShareCaller(c *childData) bool {
	return shareCaller.Load() && sharesMemory(c)
}

// cloneSharing clones an init for c that shares this process's memory.
// ok is false when nothing was cloned (no memory for it): the caller
// clones init another way. release unmaps init's memory: once it is reaped.
func cloneSharing(c *childData) (pid, pidfd int, release func(), errno syscall.Errno, ok bool) {
	mem, err := unix.Mmap(-1, 0, slotSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return 0, -1, nil, 0, false
	}
	a := arena{buf: mem[:slotSize-slotStack]}
	cc := c.copyTo(&a)
	if a.full {
		unix.Munmap(mem)
		return 0, -1, nil, 0, false
	}
	// This process blanked its command line, and its score is the
	// commands' already (ShareCallerMemory).
	cc.argStart, cc.argEnd, cc.envStart, cc.envEnd = 0, 0, 0, 0
	cc.oomPath = nil
	copy(cc.comm[:], "hutch-init")
	top := (uintptr(unsafe.Pointer(&mem[0])) + slotSize) &^ 15
	onForkerThread(func() { pid, pidfd, errno = cloneSharingOn(cc, top) })
	if errno != 0 {
		unix.Munmap(mem)
		return 0, -1, nil, errno, true
	}
	if cc.req != nil {
		c.reqAddr = uintptr(unsafe.Pointer(cc.req))
	}
	return pid, pidfd, func() { unix.Munmap(mem) }, 0, true
}

// cloneSharingOn clones init, on the stack that ends at top, with cc, a
// copy of its childData below that stack. It runs on the forker thread,
// to which init's parent-death signal is tied.
//
//go:noinline
//go:norace
//go:nocheckptr
func cloneSharingOn(cc *childData, top uintptr) (pid int, pidfd int, errno syscall.Errno) {
	syscall.ForkLock.Lock()
	runtime_BeforeFork() // init starts with every signal blocked
	r1, err1 := rawCloneOn(cc.cloneflags|unix.CLONE_PIDFD|unix.CLONE_VM|uintptr(syscall.SIGCHLD), top,
		uintptr(unsafe.Pointer(&cc.pidfd)), initEntryPC(), unsafe.Pointer(cc))
	runtime_AfterFork()
	syscall.ForkLock.Unlock()
	if err1 != 0 {
		return 0, -1, syscall.Errno(err1)
	}
	return int(r1), int(cc.pidfd), 0
}
