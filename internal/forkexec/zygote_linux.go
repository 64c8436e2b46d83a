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
// copy of that.
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
	zconn    int
	msg      unix.Msghdr
	iov      unix.Iovec
	reply    zygoteReply
	name     [16]byte // the zygote's command name
	initName [16]byte // its inits'
	parent   uintptr  // our pid: the zygote exits if its parent is gone
	initFn   func(*childData)
	sigdfl   [4]uintptr // a kernel sigaction of SIG_DFL
	memPath  [16]byte   // /proc/self/mem
	blank    [2][2]uintptr
	// What the zygote frees of its copy of the process, see dropRanges.
	drop  [64][2]uintptr
	ndrop int
}

type zygoteReply struct {
	Pid   int64
	Pidfd int32
	Errno int32
}

// stageSize bounds a request: argv and environment included. Larger ones
// are cloned from the caller directly.
const stageSize = 1 << 20

// zygoteStack is the size of the zygote's stack, and of its inits'.
const zygoteStack = 256 << 10

// zyg is the zygote, under zygMu. zygoteOff is set when one cannot be
// made: clones are then direct.
var (
	zygMu     sync.Mutex
	zyg       *zygote
	zygoteOff bool
	started   int // inits started so far
)

// startInit clones an init for c, through the zygote when there is one.
// The zygote is made at the second start: a process that starts one
// sandbox (a command-line tool) clones it directly, which costs it less
// than a zygote would. It is made on the forker thread, to which its
// parent-death signal, and its inits', is then tied; a request to it can
// come from any thread.
func startInit(c *childData) (pid, pidfd int, errno syscall.Errno) {
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
	if zyg != nil {
		pid, pidfd, errno, ok := zyg.clone(c)
		if ok {
			zygMu.Unlock()
			return pid, pidfd, errno
		}
		if zyg.dead {
			zyg.close()
			zyg = nil
		}
	}
	zygMu.Unlock()
	return forkOnForkerThread(c)
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
	*z = zygote{conn: pair[0], zconn: pair[1], stage: stage, mem: mem, id: id,
		parent: uintptr(os.Getpid()), initFn: initMain}
	z.iov.Base = &stage[0]
	z.iov.SetLen(len(stage))
	z.msg.Iov = &z.iov
	z.msg.SetIovlen(1)
	copy(z.name[:], "hutch-zygote")
	copy(z.initName[:], "hutch-init")
	z.ndrop = copy(z.drop[:], dropRanges(stage, mem))
	copy(z.memPath[:], "/proc/self/mem")
	ae := argEnv()
	z.blank = [2][2]uintptr{{ae[0], ae[1]}, {ae[2], ae[3]}}
	pid, pidfd, errno := spawnZygote(z)
	if errno != 0 {
		return fail(os.NewSyscallError("clone", errno))
	}
	z.pid, z.pidfd = pid, pidfd
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
		err1 syscall.Errno
		c    *childData
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
		c = (*childData)(unsafe.Pointer(z.iov.Base))
		r1, _, err1 = syscall.RawSyscall6(syscall.SYS_CLONE, c.cloneflags|unix.CLONE_PIDFD|unix.CLONE_PARENT,
			0, uintptr(unsafe.Pointer(&c.pidfd)), 0, 0, 0)
		if err1 == 0 && r1 == 0 {
			syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_NAME, uintptr(unsafe.Pointer(&z.initName[0])), 0)
			// Through a func value: the zygote runs on a stack of its
			// own, of zygoteStack bytes, not within the limit the linker
			// checks nosplit call chains against.
			z.initFn(c)
		}
		z.reply.Pid = int64(r1)
		z.reply.Pidfd = int32(c.pidfd)
		z.reply.Errno = int32(err1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(z.zconn), uintptr(unsafe.Pointer(&z.reply)), unsafe.Sizeof(z.reply))
	}
}

// clone asks the zygote for an init. ok is false when the request did not
// go through (too large, or the zygote is gone): nothing was cloned then.
func (z *zygote) clone(c *childData) (pid, pidfd int, errno syscall.Errno, ok bool) {
	a := arena{buf: z.stage}
	cc := c.copyTo(&a)
	if a.full {
		return 0, -1, 0, false
	}
	cc.fromZygote = true
	if err := unix.Send(z.conn, z.stage[:a.off], 0); err != nil {
		// Too large for one message: not the zygote's fault.
		z.dead = err != unix.EMSGSIZE && err != unix.ENOBUFS
		return 0, -1, 0, false
	}
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
			return 0, -1, 0, false
		}
		break
	}
	var rep zygoteReply
	n, err := unix.Read(z.conn, unsafe.Slice((*byte)(unsafe.Pointer(&rep)), unsafe.Sizeof(rep)))
	if err != nil || n != int(unsafe.Sizeof(rep)) {
		z.dead = true
		return 0, -1, 0, false
	}
	if rep.Errno != 0 {
		return 0, -1, syscall.Errno(rep.Errno), true
	}
	if cc.req != nil {
		c.reqAddr = uintptr(unsafe.Pointer(cc.req))
	}
	return int(rep.Pid), int(rep.Pidfd), 0, true
}

// close ends the zygote and frees what it held.
func (z *zygote) close() {
	unix.PidfdSendSignal(z.pidfd, unix.SIGKILL, nil, 0)
	waitPid(z.pid)
	unix.Close(z.pidfd)
	unix.Close(z.conn)
	unix.Close(z.zconn)
	unix.Munmap(z.stage)
	unix.Munmap(z.mem) // z with it
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
	if c.seccomp != nil {
		f := (*unix.SockFprog)(a.alloc(unsafe.Sizeof(*c.seccomp), unsafe.Alignof(*c.seccomp)))
		filter := arenaCopy(a, unsafe.Slice(c.seccomp.Filter, c.seccomp.Len))
		if f != nil && len(filter) > 0 {
			f.Len = c.seccomp.Len
			f.Filter = &filter[0]
		}
		cc.seccomp = f
	}
	return cc
}
