package forkexec

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The zygote is a fork of this process, made once, from which every init
// is cloned.
//
// Cloning init from the Go process itself cost the caller dearly: the clone
// copies the process's page tables and write-protects its whole heap, and
// for as long as init lives every page the Go program writes is copied,
// with a TLB shootdown on every CPU running one of its threads. That was a
// quarter of a sandboxed run's CPU time. The zygote's memory is frozen at
// its birth: cloning from it leaves the caller's pages alone.
//
// The zygote shares this process's descriptor table (CLONE_FILES), so an
// init it clones gets the caller's descriptors of that moment, as a direct
// clone would, and the pidfd the kernel makes for it lands in the caller's
// table. It clones with CLONE_PARENT: init is the caller's child, waited
// for and signaled as before, and its parent-death signal is tied to the
// forker thread, like the zygote's own.
//
// A request is a childData with everything it points to, copied into a
// staging area mapped before the zygote was born: at the same address in
// both processes, so its pointers hold in the zygote's copy, and in init's
// copy of that. It goes to the zygote in a message, after a zygoteHeader.
//
// An init of a new PID namespace, without a user namespace, shares the
// zygote's memory (CLONE_VM) instead of getting a copy of it: its clone
// copies no page tables and its exit frees none, which took a tenth of a
// run's time. Such an init needs memory of its own in that space for as
// long as it lives, for its request and its stack: a slot of the slot
// area, shared memory (MAP_SHARED) mapped before the zygote was born, into
// which the caller writes the request directly. The caller gives the slot
// back once it has reaped the init: the kernel ends every other process of
// a PID namespace (the command, vforked on init's stack, among them)
// before its init can be reaped, so nothing uses the slot after that.
// Inits in a user namespace keep a copy: their unprivileged caller writes
// their ID maps, which it could not once one of them had made the shared
// memory non-dumpable. So do all inits under the race detector, whose
// instrumentation of initEntry's entry needs a Go runtime.
//
// A zygote made before the process changed its uid, gids, capabilities,
// no_new_privs or seccomp mode is replaced at the next start. What it does
// not see is what else changes later in the process-wide state: its
// working directory, umask and rlimits, and seccomp filters added to one
// already there, are those of the zygote's birth (the steps use absolute
// paths and set modes and the command's limits explicitly).
type zygote struct {
	pid   int
	pidfd int
	conn  int      // our end of the request socket
	stage []byte   // the staging area
	mem   []byte   // the mapping that holds the zygote's stack, then this
	dead  bool     // it stopped answering: to be replaced
	id    identity // the process's when the zygote was made

	// Used by the zygote, in its copy.
	slotBase  unsafe.Pointer // the slot area
	nslots    uintptr
	zconn     int
	msg       unix.Msghdr
	iov       unix.Iovec
	reply     zygoteReply
	name      [16]byte // the zygote's command name
	parent    uintptr  // our pid: the zygote exits if its parent is gone
	initFn    func(*childData)
	initEntry uintptr    // initEntry's ABI0 entry, for rawCloneOn
	sigdfl    [4]uintptr // a kernel sigaction of SIG_DFL
	memPath   [16]byte   // /proc/self/mem
	oomPath   [32]byte   // /proc/self/oom_score_adj
	oomValue  [4]byte
	blank     [2][2]uintptr
	capLast   uintptr // the highest capability: see zygoteEntry
	bsetEmpty bool    // the zygote's bounding set is empty
	// What the zygote frees of its copy of the process, see dropRanges.
	drop  [64][2]uintptr
	ndrop int
}

type zygoteReply struct {
	Pid   int64
	Pidfd int32
	Errno int32
}

// zygoteHeader starts every request message. Slot is the slot whose
// request area holds the request, or -1: the request follows the header
// in the message.
type zygoteHeader struct {
	Slot int64
	_    int64
}

const headerSize = int(unsafe.Sizeof(zygoteHeader{}))

// A request in the message is laid out from headerSize on, where the
// zygote looks for it: the childData first, at that offset.
var _ [0]struct{} = [uintptr(headerSize) % unsafe.Alignof(childData{})]struct{}{}

// stageSize bounds a request: argv and environment included. Larger ones
// are cloned from the caller directly.
const stageSize = 1 << 20

// The slot area: numSlots slots of slotSize bytes, each a request area
// followed by a stack of slotStack bytes (init's nosplit code, and the
// command's on the same stack until its execve, need a kilobyte or two; it
// would overrun its own request, not another slot).
// A request larger than a slot's area goes in the message, and its init
// gets a copy of the zygote's memory; so does one made while every slot is
// taken. The area is reserved, not committed: a slot's pages are there
// once it has been used.
const (
	slotSize  = 128 << 10
	slotStack = 16 << 10
	numSlots  = 1024
)

// zygoteStack is the size of the zygote's stack, and of its inits'.
const zygoteStack = 256 << 10

// zyg is the zygote, under zygMu. zygoteOff is set when one cannot be
// made: clones are then direct.
var (
	zygMu     sync.Mutex
	zyg       *zygote
	zygoteOff bool
	started   int // inits started so far
	// zygSlots is zyg's slot area. It is not in the zygote struct: that
	// lives in memory of its own, where the garbage collector would not
	// see it. (An older one lives on in the release funcs of its inits.)
	zygSlots *slotArea
)

// startInit clones an init for c, through the zygote when there is one.
// The zygote is made at the second start: a process that starts one
// sandbox (a command-line tool) clones it directly, which costs it less
// than a zygote would. It is made on the forker thread, to which its
// parent-death signal, and its inits', is then tied; a request to it can
// come from any thread.
//
// An init that may share this process's memory (ShareCallerMemory) does,
// without a zygote.
//
// release, when not nil, is to be called once init has been reaped.
func startInit(c *childData) (pid, pidfd int, release func(), errno syscall.Errno) {
	if canShareCaller(c) {
		if pid, pidfd, release, errno, ok := cloneSharing(c); ok {
			return pid, pidfd, release, errno
		}
	}
	zygMu.Lock()
	started++
	if zyg != nil {
		if id, ok := currentIdentity(); !ok || id != zyg.id {
			// The process changed what it may do (dropped root or
			// capabilities, set no_new_privs, entered seccomp): a zygote
			// made before would clone inits with the old rights.
			zyg.close()
			zyg = nil
		}
	}
	if zyg == nil && !zygoteOff && haveZygote && started > 1 {
		onForkerThread(func() {
			z, err := newZygote()
			if err != nil {
				zygoteOff = true
			} else {
				zyg = z
			}
		})
	}
	// A command that keeps its capabilities needs a full bounding set,
	// which a zygote that could empty its own does not have (see
	// zygoteEntry), nor an init it clones outside a user namespace. (An
	// init that executes nothing, paused or making a socket, has no use
	// for one.)
	fullBset := !c.dropCaps && !c.pause && !c.socket && c.cloneflags&unix.CLONE_NEWUSER == 0
	if zyg != nil && !(fullBset && zyg.id.emptiesBoundingSet()) {
		pid, pidfd, release, errno, ok := zyg.clone(c)
		if ok {
			zygMu.Unlock()
			return pid, pidfd, release, errno
		}
		if zyg.dead {
			zyg.close()
			zyg = nil
		}
	}
	zygMu.Unlock()
	pid, pidfd, errno = forkOnForkerThread(c)
	return pid, pidfd, nil, errno
}

// zygotePid returns the zygote's pid, or 0 when there is none (yet). It is
// a long-lived child of this process, there by design.
func zygotePid() int {
	zygMu.Lock()
	defer zygMu.Unlock()
	if zyg == nil {
		return 0
	}
	return zyg.pid
}

// identity is what a process is allowed to do, as far as cloning a
// sandbox goes: an init has its parent's.
type identity struct {
	euid, egid  int
	groups      [64]uint32
	ngroups     int
	caps        [2]unix.CapUserData
	noNewPrivs  int
	seccompMode int
}

// currentIdentity returns this process's identity; ok is false when it
// cannot be told (too many groups).
func currentIdentity() (id identity, ok bool) {
	groups, err := unix.Getgroups()
	if err != nil || len(groups) > len(id.groups) {
		return id, false
	}
	id.euid, id.egid, id.ngroups = os.Geteuid(), os.Getegid(), len(groups)
	for i, v := range groups {
		id.groups[i] = uint32(v)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if unix.Capget(&hdr, &id.caps[0]) != nil {
		return id, false
	}
	id.noNewPrivs, _ = unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	id.seccompMode, _ = unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	return id, true
}

// emptiesBoundingSet says whether a zygote made with this identity
// empties its bounding set (see zygoteEntry): whether it may.
func (id identity) emptiesBoundingSet() bool {
	return id.caps[0].Effective&(1<<unix.CAP_SETPCAP) != 0
}

func newZygote() (*zygote, error) {
	id, ok := currentIdentity()
	if !ok {
		return nil, errors.New("forkexec: cannot tell this process's credentials apart for a zygote")
	}
	var undo []func()
	fail := func(err error) (*zygote, error) {
		for _, u := range undo {
			u()
		}
		return nil, err
	}
	stage, err := unix.Mmap(-1, 0, stageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fail(os.NewSyscallError("mmap", err))
	}
	undo = append(undo, func() { unix.Munmap(stage) })
	// Without the slot area (an address-space limit, say) every init gets
	// a copy, as before there was one.
	slots, err := unix.Mmap(-1, 0, numSlots*slotSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err == nil {
		undo = append(undo, func() { unix.Munmap(slots) })
	}
	// The zygote's stack, and the zygote itself after it: all it keeps of
	// the process's writable memory besides the staging area.
	header := (int(unsafe.Sizeof(zygote{})) + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	mem, err := unix.Mmap(-1, 0, zygoteStack+header, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_STACK)
	if err != nil {
		return fail(os.NewSyscallError("mmap", err))
	}
	undo = append(undo, func() { unix.Munmap(mem) })
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(os.NewSyscallError("socketpair", err))
	}
	undo = append(undo, func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	// Large requests (long command lines) in one message; beyond what the
	// kernel allows they are cloned directly.
	unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_SNDBUF, stageSize)
	z := (*zygote)(unsafe.Pointer(&mem[zygoteStack]))
	var slotBase unsafe.Pointer
	if len(slots) > 0 {
		slotBase = unsafe.Pointer(&slots[0])
	}
	*z = zygote{conn: pair[0], zconn: pair[1], stage: stage, mem: mem, id: id,
		slotBase: slotBase, nslots: uintptr(len(slots) / slotSize),
		parent: uintptr(os.Getpid()), initFn: initMain, initEntry: initEntryPC(), capLast: capLast()}
	z.iov.Base = &stage[0]
	z.iov.SetLen(len(stage))
	z.msg.Iov = &z.iov
	z.msg.SetIovlen(1)
	copy(z.name[:], "hutch-zygote")
	z.ndrop = copy(z.drop[:], dropRanges(stage, mem))
	copy(z.memPath[:], "/proc/self/mem")
	copy(z.oomPath[:], oomScorePath)
	copy(z.oomValue[:], commandsOOMScore)
	ae := argEnv()
	z.blank = [2][2]uintptr{{ae[0], ae[1]}, {ae[2], ae[3]}}
	pid, pidfd, errno := spawnZygote(z)
	if errno != 0 {
		return fail(os.NewSyscallError("clone", errno))
	}
	z.pid, z.pidfd = pid, pidfd
	zygSlots = &slotArea{mem: slots}
	return z, nil
}

// dropRanges returns this process's private anonymous writable memory
// (the Go heap, goroutine stacks, the runtime's own structures), less keep:
// the zygote frees its copy of it, so that the inits it clones do not copy
// its page tables and tear them down again. It is emptied, not unmapped:
// the kernel may still write to some of it (glibc's rseq area in a
// thread's TLS, in a cgo binary), and gets fresh zero pages.
func dropRanges(keep ...[]byte) [][2]uintptr {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	var out [][2]uintptr
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// start-end perms offset dev inode, and no name.
		if len(f) != 5 || f[1] != "rw-p" || f[4] != "0" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		pieces := [][2]uintptr{{uintptr(start), uintptr(end)}}
		for _, k := range keep {
			ks := uintptr(unsafe.Pointer(&k[0]))
			ke := ks + uintptr(len(k))
			var next [][2]uintptr
			for _, p := range pieces {
				if ke <= p[0] || ks >= p[1] {
					next = append(next, p)
					continue
				}
				if p[0] < ks {
					next = append(next, [2]uintptr{p[0], ks})
				}
				if ke < p[1] {
					next = append(next, [2]uintptr{ke, p[1]})
				}
			}
			pieces = next
		}
		out = append(out, pieces...)
	}
	return out
}

// spawnZygote clones the zygote, which runs zygoteEntry on its own stack.
//
//go:noinline
//go:norace
//go:nocheckptr
func spawnZygote(z *zygote) (pid int, pidfd int, errno syscall.Errno) {
	var fd int32
	top := uintptr(unsafe.Pointer(&z.mem[0])) + zygoteStack
	syscall.ForkLock.Lock()
	runtime_BeforeFork()
	r1, err1 := rawCloneOn(unix.CLONE_FILES|unix.CLONE_PIDFD|uintptr(syscall.SIGCHLD), top&^15,
		uintptr(unsafe.Pointer(&fd)), zygoteEntryPC(), unsafe.Pointer(z))
	runtime_AfterFork()
	syscall.ForkLock.Unlock()
	if err1 != 0 {
		return 0, -1, syscall.Errno(err1)
	}
	return int(r1), int(fd), 0
}

// zygoteEntry is where the zygote starts, in a copy of the process with
// one thread and a poisoned stack guard, on a stack of its own.
// (zygoteEntryPC, in assembly, refers to it.)
//
//lint:ignore U1000 called from assembly
//go:nosplit
//go:norace
//go:nocheckptr
func zygoteEntry(z *zygote) {
	runtime_AfterForkInChild()
	for i := 0; i < z.ndrop; i++ {
		syscall.RawSyscall(syscall.SYS_MADVISE, z.drop[i][0], z.drop[i][1]-z.drop[i][0], unix.MADV_DONTNEED)
	}
	// What every init would otherwise do for itself: default signal
	// dispositions (the runtime left those it ignored ignored), and the
	// caller's argv and environment blanked (/proc/1/cmdline shows them;
	// the staging area is all zeros yet).
	for i := uintptr(1); i <= 64; i++ {
		if i != uintptr(syscall.SIGKILL) && i != uintptr(syscall.SIGSTOP) {
			syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, i, uintptr(unsafe.Pointer(&z.sigdfl)), 0, 8, 0, 0)
		}
	}
	// Every init's command is to be the OOM killer's first choice
	// (Config.OOMScoreAdj): inits inherit the score, and so do their
	// commands.
	if fd, _, err := syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(&z.oomPath[0])), unix.O_WRONLY|unix.O_CLOEXEC, 0, 0, 0); err == 0 {
		syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&z.oomValue[0])), uintptr(len(z.oomValue)))
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	}
	// Every command of an init it clones executes with an empty bounding
	// set (one that keeps its capabilities is cloned without the zygote,
	// see startInit): empty the zygote's, once, and inits cloned without
	// a user namespace (where it starts full again) and their commands
	// have it so, 41 prctl calls a run saved. Nothing the zygote or an
	// init does is an execve, which is all the bounding set limits.
	z.bsetEmpty = dropBoundingSet(z.capLast) == 0
	if fd, _, err := syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(&z.memPath[0])), unix.O_RDWR|unix.O_CLOEXEC, 0, 0, 0); err == 0 {
		for i := 0; i < 2; i++ {
			if z.blank[i][1] > z.blank[i][0] && z.blank[i][1]-z.blank[i][0] <= uintptr(len(z.stage)) {
				syscall.RawSyscall6(syscall.SYS_PWRITE64, fd, uintptr(unsafe.Pointer(&z.stage[0])), z.blank[i][1]-z.blank[i][0], z.blank[i][0], 0, 0)
			}
		}
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	}
	zygoteMain(z)
}

// zygoteMain serves requests: each is a childData in the staging area, for
// which it clones an init and replies with its pid and pidfd. It exits when
// the caller is gone.
//
//go:nosplit
//go:norace
//go:nocheckptr
func zygoteMain(z *zygote) {
	var (
		r1   uintptr
		e    uintptr
		err1 syscall.Errno
		c    *childData
		hdr  *zygoteHeader
	)
	syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	r1, _, _ = syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	if r1 != z.parent {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_NAME, uintptr(unsafe.Pointer(&z.name[0])), 0)
	for {
		r1, _, err1 = syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(z.zconn), uintptr(unsafe.Pointer(&z.msg)), 0)
		if err1 == syscall.EINTR {
			continue
		}
		if err1 != 0 || r1 == 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		}
		z.reply.Pidfd = -1
		hdr = (*zygoteHeader)(unsafe.Pointer(z.iov.Base))
		switch {
		case r1 < uintptr(headerSize) || hdr.Slot >= int64(z.nslots):
			r1, err1 = 0, syscall.EINVAL
		case hdr.Slot >= 0:
			// init shares our memory, on the slot's stack.
			c = (*childData)(unsafe.Add(z.slotBase, uintptr(hdr.Slot)*slotSize))
			c.bsetEmpty = z.bsetEmpty && c.cloneflags&unix.CLONE_NEWUSER == 0
			r1, e = rawCloneOn(c.cloneflags|unix.CLONE_PIDFD|unix.CLONE_PARENT|unix.CLONE_VM,
				(uintptr(z.slotBase)+uintptr(hdr.Slot+1)*slotSize)&^15, uintptr(unsafe.Pointer(&c.pidfd)), z.initEntry, unsafe.Pointer(c))
			err1 = syscall.Errno(e)
		default:
			c = (*childData)(unsafe.Add(unsafe.Pointer(z.iov.Base), headerSize))
			c.bsetEmpty = z.bsetEmpty && c.cloneflags&unix.CLONE_NEWUSER == 0
			r1, _, err1 = syscall.RawSyscall6(syscall.SYS_CLONE, c.cloneflags|unix.CLONE_PIDFD|unix.CLONE_PARENT,
				0, uintptr(unsafe.Pointer(&c.pidfd)), 0, 0, 0)
			if err1 == 0 && r1 == 0 {
				syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_NAME, uintptr(unsafe.Pointer(&c.comm[0])), 0)
				// Through a func value: the zygote runs on a stack of its
				// own, of zygoteStack bytes, not within the limit the linker
				// checks nosplit call chains against.
				z.initFn(c)
			}
		}
		if err1 == 0 {
			z.reply.Pidfd = c.pidfd
		}
		z.reply.Pid = int64(r1)
		z.reply.Errno = int32(err1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(z.zconn), uintptr(unsafe.Pointer(&z.reply)), unsafe.Sizeof(z.reply))
	}
}

// initEntry is where an init that shares the zygote's memory starts, on
// its slot's stack. (initEntryPC, in assembly, refers to it.)
//
//lint:ignore U1000 called from assembly
//go:nosplit
//go:norace
//go:nocheckptr
func initEntry(c *childData) {
	syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_NAME, uintptr(unsafe.Pointer(&c.comm[0])), 0)
	// Through a func value, as from zygoteMain: the slot's stack is not
	// bounded by the limit the linker checks nosplit call chains against.
	initMainFn(c)
}

var initMainFn = initMain

// sharesMemory reports whether c's init may share the memory of the
// process that clones it (see above): an init of a new PID namespace,
// without a user namespace, not OwnMemory, not under the race detector.
func sharesMemory(c *childData) bool {
	return c.cloneflags&unix.CLONE_NEWPID != 0 && c.cloneflags&unix.CLONE_NEWUSER == 0 &&
		!c.ownMemory && !raceEnabled
}

// clone asks the zygote for an init. ok is false when the request did not
// go through (too large, or the zygote is gone): nothing was cloned then.
// release, when not nil, gives back the init's slot: once it is reaped.
// Like close, it is called for zyg under zygMu: zygSlots is z's area.
func (z *zygote) clone(c *childData) (pid, pidfd int, release func(), errno syscall.Errno, ok bool) {
	slot := -1
	var cc *childData
	if sharesMemory(c) {
		if i, ok := zygSlots.take(); ok {
			a := arena{buf: zygSlots.request(i)}
			if cc = c.copyTo(&a); a.full {
				zygSlots.put(i)
			} else {
				slot = i
				// Its score is the zygote's already; setting it again
				// would set it for every process sharing the memory, a
				// walk of all the machine's processes.
				cc.oomPath = nil
			}
		}
	}
	var msg []byte
	if slot >= 0 {
		hdr := zygoteHeader{Slot: int64(slot)}
		msg = unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), headerSize)
	} else {
		a := arena{buf: z.stage, off: headerSize}
		cc = c.copyTo(&a)
		if a.full {
			return 0, -1, nil, 0, false
		}
		*(*zygoteHeader)(unsafe.Pointer(&z.stage[0])) = zygoteHeader{Slot: -1}
		msg = z.stage[:a.off]
	}
	cc.fromZygote = true
	copy(cc.comm[:], "hutch-init")
	if err := unix.Send(z.conn, msg, 0); err != nil {
		// Too large for one message: not the zygote's fault.
		z.dead = err != unix.EMSGSIZE && err != unix.ENOBUFS
		if slot >= 0 {
			zygSlots.put(slot)
		}
		return 0, -1, nil, 0, false
	}
	// From here on, a slot whose init may exist without our knowing it
	// (the zygote died before it replied) is never given back.
	//
	// The zygote's end of the socket is in our table too: its death shows
	// on its pidfd, not as an end of file.
	fds := []unix.PollFd{{Fd: int32(z.conn), Events: unix.POLLIN}, {Fd: int32(z.pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || fds[0].Revents&unix.POLLIN == 0 {
			z.dead = true
			return 0, -1, nil, 0, false
		}
		break
	}
	var rep zygoteReply
	n, err := unix.Read(z.conn, unsafe.Slice((*byte)(unsafe.Pointer(&rep)), unsafe.Sizeof(rep)))
	if err != nil || n != int(unsafe.Sizeof(rep)) {
		z.dead = true
		return 0, -1, nil, 0, false
	}
	if rep.Errno != 0 {
		if slot >= 0 {
			zygSlots.put(slot)
		}
		return 0, -1, nil, syscall.Errno(rep.Errno), true
	}
	if cc.req != nil {
		c.reqAddr = uintptr(unsafe.Pointer(cc.req))
	}
	if slot >= 0 {
		slots := zygSlots
		release = func() { slots.put(slot) }
	}
	return int(rep.Pid), int(rep.Pidfd), release, 0, true
}

// close ends the zygote and frees what it held.
func (z *zygote) close() {
	unix.PidfdSendSignal(z.pidfd, unix.SIGKILL, nil, 0)
	waitPid(z.pid)
	unix.Close(z.pidfd)
	unix.Close(z.conn)
	unix.Close(z.zconn)
	unix.Munmap(z.stage)
	zygSlots.close()
	unix.Munmap(z.mem) // z with it
}

// slotArea hands out the slots of a zygote's slot area. It outlives the
// zygote while inits still use slots of it: the area is unmapped here once
// the zygote is closed and every slot is back.
type slotArea struct {
	mem    []byte
	mu     sync.Mutex
	free   []int
	next   int // slots from next on have never been used
	inUse  int
	closed bool
}

// take returns a free slot; ok is false when there is none.
func (s *slotArea) take() (slot int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, false
	case len(s.free) > 0:
		slot = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	case s.next < len(s.mem)/slotSize:
		slot = s.next
		s.next++
	default:
		return 0, false
	}
	s.inUse++
	return slot, true
}

// request is slot's request area.
func (s *slotArea) request(slot int) []byte {
	return s.mem[slot*slotSize : (slot+1)*slotSize-slotStack]
}

// put gives slot back.
func (s *slotArea) put(slot int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, slot)
	s.inUse--
	s.unmapIfDone()
}

// close says no slot will be taken any more.
func (s *slotArea) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.unmapIfDone()
}

func (s *slotArea) unmapIfDone() {
	if s.closed && s.inUse == 0 && s.mem != nil {
		unix.Munmap(s.mem)
		s.mem = nil
	}
}

// arena hands out memory from a buffer, zeroed, in order.
type arena struct {
	buf  []byte
	off  int
	full bool
}

func (a *arena) alloc(size, align uintptr) unsafe.Pointer {
	off := (a.off + int(align) - 1) &^ (int(align) - 1)
	if a.full || off+int(size) > len(a.buf) {
		a.full = true
		return nil
	}
	clear(a.buf[off : off+int(size)])
	a.off = off + int(size)
	return unsafe.Pointer(&a.buf[off])
}

// cstring copies a NUL-terminated string.
func (a *arena) cstring(p *byte) *byte {
	if p == nil {
		return nil
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	q := a.alloc(uintptr(n+1), 1)
	if q == nil {
		return nil
	}
	copy(unsafe.Slice((*byte)(q), n+1), unsafe.Slice(p, n+1))
	return (*byte)(q)
}

// cstrings copies a nil-terminated array of C strings.
func (a *arena) cstrings(s []*byte) []*byte {
	d := arenaCopy(a, s)
	for i := range d {
		d[i] = a.cstring(d[i])
	}
	return d
}

// arenaCopy copies s, elements as they are, into a.
func arenaCopy[T any](a *arena, s []T) []T {
	if s == nil {
		return nil
	}
	var zero T
	p := a.alloc(uintptr(len(s))*unsafe.Sizeof(zero), unsafe.Alignof(zero))
	if p == nil {
		return nil
	}
	d := unsafe.Slice((*T)(p), len(s))
	copy(d, s)
	return d
}

// copyTo copies c and everything it points to into a, and returns the
// copy, whose pointers all point into a. (TestCopyToCoversEveryPointer
// checks that no field is forgotten.)
func (c *childData) copyTo(a *arena) *childData {
	p := a.alloc(unsafe.Sizeof(*c), unsafe.Alignof(*c))
	if p == nil {
		return nil
	}
	cc := (*childData)(p)
	*cc = *c
	cc.ops = arenaCopy(a, c.ops)
	for i := range cc.ops {
		o := &cc.ops[i]
		o.a, o.b, o.c, o.d = a.cstring(o.a), a.cstring(o.b), a.cstring(o.c), a.cstring(o.d)
	}
	cc.path = a.cstrings(c.path)
	cc.argv = a.cstrings(c.argv)
	cc.envv = a.cstrings(c.envv)
	cc.rlimits = arenaCopy(a, c.rlimits)
	cc.closeRange = arenaCopy(a, c.closeRange)
	cc.groups = arenaCopy(a, c.groups)
	cc.join = arenaCopy(a, c.join)
	cc.cgProcs = arenaCopy(a, c.cgProcs)
	cc.emptyPath = a.cstring(c.emptyPath)
	cc.memPath = a.cstring(c.memPath)
	cc.rootPath = a.cstring(c.rootPath)
	cc.oomPath = a.cstring(c.oomPath)
	if c.req != nil {
		cc.req = (*request)(a.alloc(unsafe.Sizeof(*c.req), unsafe.Alignof(*c.req)))
	}
	cc.linkBuffers()
	cc.seccomp = a.fprog(c.seccomp)
	cc.initSeccomp = a.fprog(c.initSeccomp)
	return cc
}

// fprog copies a filter, if there is one, into the arena.
func (a *arena) fprog(p *unix.SockFprog) *unix.SockFprog {
	if p == nil {
		return nil
	}
	f := (*unix.SockFprog)(a.alloc(unsafe.Sizeof(*p), unsafe.Alignof(*p)))
	filter := arenaCopy(a, unsafe.Slice(p.Filter, p.Len))
	if f != nil && len(filter) > 0 {
		f.Len = p.Len
		f.Filter = &filter[0]
	}
	return f
}
