package forkexec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The runtime's fork hooks, kept for this use (see go.dev/issue/67401):
// BeforeFork blocks signals and poisons the stack guard so that any stack
// growth in the child crashes loudly instead of corrupting memory.

//go:linkname runtime_BeforeFork syscall.runtime_BeforeFork
func runtime_BeforeFork()

//go:linkname runtime_AfterFork syscall.runtime_AfterFork
func runtime_AfterFork()

//go:linkname runtime_AfterForkInChild syscall.runtime_AfterForkInChild
func runtime_AfterForkInChild()

// Fixed stages of the child that are not setup steps. A step's failure is
// reported with its index (>= 0); these are negative.
const (
	stageWaitParent      = -1
	stageUnshareCgroup   = -2
	stageFork            = -3
	stageSetsid          = -4
	stageRlimit          = -5
	stageStdio           = -6
	stageCloseFds        = -7
	stageExecve          = -8
	stageNoNewPrivs      = -9
	stageSignals         = -10
	stageSetgroups       = -11
	stageSetgid          = -12
	stageSetuid          = -13
	stageCloseInheriteds = -14
	stageCapabilities    = -15
	stageSeccomp         = -16
	stageSetns           = -17
	stageSocket          = -18
	stageJoinCgroup      = -19
	stageRequest         = -20
	stageRequestBind     = -21
	stageChdir           = -22
	// stageReady is no failure: a deferred child is set up.
	stageReady = -100
	// stageStarted is no failure either: a reusable child's command was
	// executed (its error pipe stays open for the next command).
	stageStarted = -101
)

var fixedStages = map[int32]string{
	stageWaitParent:      "wait for parent",
	stageUnshareCgroup:   "unshare cgroup namespace",
	stageFork:            "fork command",
	stageSetsid:          "setsid",
	stageRlimit:          "setrlimit",
	stageStdio:           "set up stdio",
	stageCloseFds:        "close file descriptors",
	stageExecve:          "execve",
	stageNoNewPrivs:      "set no_new_privs",
	stageSignals:         "reset signals",
	stageSetgroups:       "setgroups",
	stageSetgid:          "setgid",
	stageSetuid:          "setuid",
	stageCloseInheriteds: "close inherited file descriptors",
	stageCapabilities:    "drop capabilities",
	stageSeccomp:         "install seccomp filter",
	stageSetns:           "join namespace",
	stageSocket:          "create socket",
	stageJoinCgroup:      "join cgroup",
	stageRequest:         "receive command",
	stageRequestBind:     "bind mount",
	stageChdir:           "chdir",
}

// Rlimit is a resource limit set on the command before execve.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// Config is everything the child needs. Start turns it into byte pointers
// before the clone.
type Config struct {
	// Cloneflags are the CLONE_NEW* namespace flags for the clone.
	Cloneflags uintptr
	// CgroupProcs are the open join files of the command's cgroup (one
	// per hierarchy, cgroup.JoinFiles: tasks on v1, cgroup.procs on v2):
	// the command, still single-threaded, writes "0" to each, moving
	// itself there, first thing after the fork. Only the command and what it
	// starts are in the group, not init: init's copy of the caller's
	// address space is not charged to it, and neither is the fork.
	CgroupProcs []*os.File
	// CgroupDir, on cgroup v2, is the command's cgroup directory: init
	// forks the command straight into it (clone3 with CLONE_INTO_CGROUP),
	// so that it never has to move, which waits for an RCU grace period.
	// CgroupProcs still serve where clone3 is refused.
	CgroupDir *os.File
	// CgroupProcsSlots and CgroupDirSlots are the same as CgroupProcs and
	// CgroupDir (at most one), as descriptor slots that OpenSlot steps
	// open in the child: the files can then be those of a cgroup the
	// caller makes while the child runs its first steps (see WaitParent).
	CgroupProcsSlots []int
	CgroupDirSlots   []int
	// CgroupNS makes the command unshare a cgroup namespace once it is in
	// its cgroup, so that the namespace is rooted there.
	CgroupNS bool
	// Steps run in order in the child, after the parent's go-ahead.
	Steps []Step
	// Path lists the candidate executables for Argv[0], tried in order as
	// execvp does: the first one that is not missing is executed.
	Path []string
	// Argv and Env are the command's arguments and environment.
	Argv []string
	Env  []string
	// Stdio are the parent's descriptors that become the command's 0, 1
	// and 2. They must all be valid.
	Stdio [3]*os.File
	// Rlimits are applied to the command before execve.
	Rlimits []Rlimit
	// Uid, Gid and Groups are the credentials of the command, set when
	// SetCredentials is true.
	SetCredentials bool
	Uid, Gid       uint32
	Groups         []uint32
	// KeepGroups leaves the supplementary groups alone: in a user
	// namespace whose setgroups is denied, setgroups fails.
	KeepGroups bool
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS on the command.
	NoNewPrivs bool
	// DropCapabilities empties every capability set of the command:
	// bounding, ambient, inheritable, permitted and effective. Without
	// it, an init that executes a command (not Pause, Socket or SendRoot)
	// outside a user namespace is cloned directly, not by a zygote that
	// could empty its own bounding set: the command keeps its caller's.
	DropCapabilities bool
	// Seccomp, when set, is installed last before execve (after
	// no_new_privs, which it needs without CAP_SYS_ADMIN).
	Seccomp *unix.SockFprog
	// InitSeccomp, for a Reusable child, is a filter its init installs
	// once set up, before its first command: each command then installs
	// Seccomp on top of it. It must allow ReusableSyscalls, which init
	// and each command make under it; seccomp.Policy.Split makes such a
	// pair from one policy, a long outer filter installed once and a
	// short inner one that each command pays for.
	InitSeccomp *unix.SockFprog
	// Join lists namespace files (/proc/PID/ns/*) the child enters with
	// setns before its steps, in order (a user namespace first). With
	// Join, Cloneflags is normally 0: the child runs in an existing
	// sandbox, and the command it forks is in that sandbox's PID namespace.
	Join []*os.File
	// Pause makes the child, once set up, stay as an init that runs no
	// command: it reaps whatever is reparented to it until it is killed.
	// Release returns once the setup is done.
	Pause bool
	// Deferred makes the child set up its sandbox without knowing its
	// command: Release returns once the setup is done, and Run gives the
	// command later (Argv, Path, Env, Stdio's and Rlimits' values come from
	// there; the rest of Config still applies).
	Deferred bool
	// Socket, when set, makes the child create a socket with these
	// parameters (in the namespaces it joined) and send it through
	// SocketConn with SCM_RIGHTS instead of running a command.
	Socket     *SocketSpec
	SocketConn *os.File
	// SendRoot, like Socket, makes the child send a descriptor through
	// SocketConn instead of running a command: its root directory, opened
	// O_PATH once it joined the namespaces (a mount namespace's root).
	SendRoot bool
	// Immediate makes the child go on with its setup at once, without
	// waiting for Release's go-ahead: for a caller with nothing to do in
	// between (no ID maps to write, no cgroup to place init in). Release
	// still waits for the command's execve.
	Immediate bool
	// OOMScoreAdj makes the command the OOM killer's first choice
	// (oom_score_adj 1000), rather than init: init is a copy of the
	// caller's address space, so its resident size looks large. (An init
	// the zygote clones has that score from it in any case.)
	OOMScoreAdj bool
	// OwnMemory gives init a copy of the zygote's memory where it could
	// share it (see zygote): for an init that will be put in a cgroup
	// with a memory limit. There the OOM killer might choose init, and
	// it kills every process that shares the victim's memory: the
	// zygote and every other init with it.
	OwnMemory bool
	// Reusable makes a Deferred child serve one command after another, as
	// long as each leaves its sandbox as it found it (Exit.Reusable).
	// When a command ends, init kills and reaps every process left in its
	// PID namespace, detaches the run's own binds (and removes the targets
	// it made for them), and checks that each filesystem of WritableSlots
	// has as many free blocks and inodes as the setup left it and that
	// the namespace's next PID can be reset (LastPidSlot): the next
	// command is PID 2 again, as in a fresh namespace. Each command also
	// gets an IPC namespace of its own. Nothing else of a command can last
	// in the sandbox only when it has no capability and is not init's uid
	// (0), and when nothing on those filesystems that the setup made is
	// its to write: the caller's to ensure.
	//
	// Run and Wait of a reusable child wait in poll(2), which blocks
	// their thread, rather than in the runtime's poller: a pool whose two
	// workers each parked a goroutine twice per run (for the exec, then
	// for the report) left the 2-CPU machine idle 17% of the time in
	// wakeups and spinning threads (BenchmarkPoolRunParallel 0.76 -> 0.59
	// ms/op; see pollReadable). Those waits take a thread each, as
	// os/exec's Wait does. (Release, the setup's wait, keeps the poller.)
	Reusable bool
	// WritableSlots are descriptor slots (OpenSlot steps) of a directory
	// on each filesystem the command may write: the tmpfs that holds the
	// overlay's upper directory and /tmp, and /dev/shm. A file made,
	// grown or linked there takes blocks or inodes (tmpfs counts each
	// link and extended attribute in its inodes).
	WritableSlots []int
	// LastPidSlot is the descriptor slot of the PID namespace's
	// /proc/sys/kernel/ns_last_pid, opened for writing, for Reusable.
	LastPidSlot int
}

// SocketSpec are socket(2)'s arguments.
type SocketSpec struct{ Domain, Type, Protocol int }

// StepError is a failure in the child between clone and execve.
type StepError struct {
	Stage string // what failed, e.g. "mount overlay" or "execve"
	Path  string // what it acted on, when there is one
	Err   syscall.Errno
}

func (e *StepError) Error() string {
	if e.Path != "" {
		return e.Stage + " " + e.Path + ": " + e.Err.Error()
	}
	return e.Stage + ": " + e.Err.Error()
}

func (e *StepError) Unwrap() error { return e.Err }

// op is a Step made ready for the child: strings as byte pointers.
type op struct {
	kind       opKind
	a, b, c, d *byte
	flags      uintptr
	mode       uint32
}

// report is what init writes to the status pipe when the command ends.
type report struct {
	Status int32
	Clean  int32 // a reusable child is clean and waits for a command
	Rusage syscall.Rusage
}

// childData is all the child reads. It lives on the Go heap of the parent;
// the child gets a copy of it with the rest of the address space and only
// writes non-pointer fields of it.
type childData struct {
	cloneflags uintptr
	cgroupNS   bool
	ops        []op
	path       []*byte
	argv       []*byte
	envv       []*byte
	rlimits    []rlimit
	closeRange [][2]uintptr
	goR        int
	immediate  bool
	waitStep   bool // a WaitParent step waits for the go-ahead
	errW       int
	statusW    int
	stdio      [3]int
	setCreds   bool
	uid, gid   uint32
	groups     []uint32
	keepGroups bool
	noNewPrivs bool
	emptyPath  *byte
	// The caller's argv and environment strings, which /proc/PID/cmdline
	// shows to anyone: init overwrites its copy (memPath, zeros).
	memPath          *byte
	argStart, argEnd uintptr
	envStart, envEnd uintptr
	zeros            [4096]byte
	join             []int
	cgProcs          []int
	cgDir            int
	cloneArgs        cloneArgs
	ncg              int
	nrlimit          int
	deferred         bool
	reqConn          int
	req              *request
	reqMsg           unix.Msghdr
	reqIov           unix.Iovec
	reqCmsg          [unix.SizeofCmsghdr + 4*(3+maxCgroupProcs+maxRequestBinds)]byte
	zero             [1]byte
	one              [1]byte
	pause            bool
	socket           bool
	sendRoot         bool
	rootPath         *byte
	sockArgs         [3]uintptr
	sockConn         int
	msg              unix.Msghdr
	iov              unix.Iovec
	iovByte          [1]byte
	cmsg             [24]byte // a cmsghdr for one descriptor: 16 bytes of header, 4 of data, padded
	oomPath          *byte
	oomValue         [4]byte
	dropCaps         bool
	capLast          uintptr
	capHdr           unix.CapUserHeader
	capData          [2]unix.CapUserData
	seccomp          *unix.SockFprog
	initSeccomp      *unix.SockFprog
	// reqAddr is where req is in the child, when that is not where it is
	// here (a clone from the zygote).
	reqAddr uintptr
	// fromZygote: the child is a clone of the zygote, whose signal
	// dispositions are all default and whose copy of the caller's command
	// line is blank already.
	fromZygote bool
	// bsetEmpty: the child's capability bounding set is empty already,
	// as the zygote's is (set by the zygote).
	bsetEmpty bool
	// comm is the name an init cloned by the zygote takes.
	comm [16]byte
	// ownMemory: Config.OwnMemory.
	ownMemory bool
	// A reusable child (Config.Reusable): its writable filesystems and
	// their free blocks and inodes once set up, its ns_last_pid, the extra
	// clone flags of its commands, and which of a request's bind targets
	// it made (to remove them after the run).
	reusable  bool
	writable  [4]int32
	nwritable int
	free      [4][2]uint64
	lastPid   int
	cmdFlags  uintptr
	bindMade  [maxRequestBinds]bool

	// Written by the child, in its own copy.
	errBuf   [2]int32
	rep      report
	stat     unix.Stat_t
	ifreq    [40]byte
	sigdfl   [4]uintptr // a kernel sigaction of SIG_DFL, no flags, empty mask
	sigmask  uint64
	pidfd    int32
	statfs   unix.Statfs_t
	readByte [1]byte
	// The command, for the fork: argv, envp and the candidate paths.
	argvp, envvp uintptr
	pathp        unsafe.Pointer
	cwdBuf       [4096]byte
}

type rlimit struct {
	resource uintptr
	lim      unix.Rlimit
}

var memPath, _ = syscall.BytePtrFromString("/proc/self/mem")

// argEnv returns where this process's argv and environment strings are,
// from /proc/self/stat (arg_start, arg_end, env_start, env_end).
var argEnv = sync.OnceValue(func() [4]uintptr {
	var r [4]uintptr
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return r
	}
	// Fields after the command's name, which may hold spaces: the 3rd
	// field (state) is the first after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	const argStart = 48 - 3 // field 48, counted from field 3
	if len(f) < argStart+4 {
		return r
	}
	for i := range r {
		n, err := strconv.ParseUint(f[argStart+i], 10, 64)
		if err != nil {
			return [4]uintptr{}
		}
		r[i] = uintptr(n)
	}
	return r
})

// capLast is the highest capability this kernel knows.
var capLast = sync.OnceValue(func() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(b))); err == nil && n > 0 && n < 64 {
			return uintptr(n)
		}
	}
	return unix.CAP_LAST_CAP
})

// cloneArgs is the kernel's struct clone_args, as far as clone3 needs it
// here (its size says which fields there are).
type cloneArgs struct {
	Flags, Pidfd, ChildTid, ParentTid, ExitSignal, Stack, StackSize, TLS, SetTid, SetTidSize, Cgroup uint64
}

// maxCgroupProcs bounds a request's cgroup files: one per hierarchy.
const maxCgroupProcs = 8

// request is a deferred child's command, received into childData.req.
type request struct {
	// Offsets in Data of nil-terminated arrays of C strings (holding
	// addresses in the child's copy) and of the working directory's C
	// string (-1: none).
	ArgvOff, EnvvOff, PathOff, DirOff int32
	Ncg, Nrlimit, Nbind               int32
	BindOff                           [maxRequestBinds]int32 // targets' C strings
	BindDir                           [maxRequestBinds]bool
	Rlimits                           [8]rlimit
	// CgDir: the descriptor after the cgroup files is the command's
	// cgroup directory, to be born in (clone3 with CLONE_INTO_CGROUP).
	CgDir int32
	Data  [48 << 10]byte
}

// Process is a started sandbox init.
type Process struct {
	// Pid is init's pid in the caller's PID namespace.
	Pid int

	steps   []Step
	dir     string // a deferred child's command's working directory
	pidfd   int
	release func() // gives back what init used of the zygote's, once reaped
	c       *childData
	reqConn *os.File
	goW     *os.File
	errR    *os.File
	statusR *os.File

	mu     sync.Mutex
	reaped bool
}

// Exit is how the command ended.
type Exit struct {
	// Reported is true when init saw the command end and reported it; it is
	// false when init itself was killed first (a limit, a cancel).
	Reported bool
	Status   syscall.WaitStatus
	Rusage   syscall.Rusage
	// InitStatus is init's own wait status.
	InitStatus syscall.WaitStatus
	// Reusable: a reusable child (Config.Reusable) found its sandbox as
	// the setup left it, and waits for another command (Run), or for
	// Close. Init was not reaped.
	Reusable bool
}

// Start clones the child. It waits, stopped before its setup, until
// Release; the caller places it in its cgroup and writes its ID maps in
// between. On error nothing is left behind.
func Start(cfg *Config) (p *Process, err error) {
	if cfg.Pause && (cfg.Socket != nil || cfg.SendRoot) {
		return nil, errors.New("forkexec: Pause and Socket exclude each other")
	}
	if !cfg.Pause && cfg.Socket == nil && !cfg.SendRoot && !cfg.Deferred && (len(cfg.Argv) == 0 || len(cfg.Path) == 0) {
		return nil, errors.New("forkexec: no command")
	}
	if cfg.Reusable && (!cfg.Deferred || len(cfg.WritableSlots) > len(childData{}.writable)) {
		return nil, errors.New("forkexec: Reusable needs Deferred and at most 4 WritableSlots")
	}
	if cfg.InitSeccomp != nil && !cfg.Reusable {
		return nil, errors.New("forkexec: InitSeccomp needs Reusable")
	}
	c := &childData{
		cloneflags:  cfg.Cloneflags,
		cgroupNS:    cfg.CgroupNS,
		setCreds:    cfg.SetCredentials,
		uid:         cfg.Uid,
		gid:         cfg.Gid,
		groups:      cfg.Groups,
		keepGroups:  cfg.KeepGroups,
		noNewPrivs:  cfg.NoNewPrivs,
		dropCaps:    cfg.DropCapabilities,
		capLast:     capLast(),
		capHdr:      unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3},
		seccomp:     cfg.Seccomp,
		initSeccomp: cfg.InitSeccomp,
		emptyPath:   new(byte),
		memPath:     memPath,
		pause:       cfg.Pause,
		immediate:   cfg.Immediate,
		ownMemory:   cfg.OwnMemory,
		reusable:    cfg.Reusable,
		lastPid:     -1,
	}
	if cfg.Reusable {
		c.cmdFlags = unix.CLONE_NEWIPC
	}
	for _, f := range cfg.Join {
		c.join = append(c.join, int(f.Fd()))
	}
	for _, f := range cfg.CgroupProcs {
		c.cgProcs = append(c.cgProcs, int(f.Fd()))
	}
	c.ncg = len(c.cgProcs)
	c.cgDir = -1
	if cfg.CgroupDir != nil {
		c.setCgroupDir(int(cfg.CgroupDir.Fd()))
	}
	var reqMine *os.File
	if cfg.Deferred {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, os.NewSyscallError("socketpair", err)
		}
		reqMine = os.NewFile(uintptr(pair[0]), "request")
		theirs := os.NewFile(uintptr(pair[1]), "request")
		defer theirs.Close()
		c.deferred, c.reqConn = true, pair[1]
		c.req = new(request)
		c.cgProcs = make([]int, maxCgroupProcs)
		c.rlimits = make([]rlimit, len(c.req.Rlimits))
		c.reqIov.SetLen(int(unsafe.Sizeof(*c.req)))
		c.reqMsg.SetIovlen(1)
		c.reqMsg.SetControllen(len(c.reqCmsg))
	}
	c.zero[0], c.one[0] = '0', '1'
	c.rootPath, _ = syscall.BytePtrFromString("/")
	if cfg.Socket != nil || cfg.SendRoot {
		if cfg.SocketConn == nil {
			return nil, errors.New("forkexec: Socket and SendRoot need SocketConn")
		}
		c.socket = true
		c.sendRoot = cfg.SendRoot
		if cfg.Socket != nil {
			c.sockArgs = [3]uintptr{uintptr(cfg.Socket.Domain), uintptr(cfg.Socket.Type | unix.SOCK_CLOEXEC), uintptr(cfg.Socket.Protocol)}
		}
		c.sockConn = int(cfg.SocketConn.Fd())
		c.iov.SetLen(1)
		c.msg.SetIovlen(1)
		c.msg.SetControllen(unix.CmsgSpace(4))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c.cmsg[0]))
		h.Level = unix.SOL_SOCKET
		h.Type = unix.SCM_RIGHTS
		h.SetLen(unix.CmsgLen(4))
	}
	c.linkBuffers()
	ae := argEnv()
	c.argStart, c.argEnd, c.envStart, c.envEnd = ae[0], ae[1], ae[2], ae[3]
	if cfg.OOMScoreAdj {
		c.oomPath, _ = syscall.BytePtrFromString(oomScorePath)
		copy(c.oomValue[:], commandsOOMScore)
	}
	path, argv := cfg.Path, cfg.Argv
	if cfg.Deferred {
		path, argv = []string{"/"}, []string{"-"}
	}
	if c.path, err = bytePtrs(path); err != nil {
		return nil, err
	}
	if c.argv, err = bytePtrs(argv); err != nil {
		return nil, err
	}
	if c.envv, err = bytePtrs(cfg.Env); err != nil {
		return nil, err
	}
	for _, r := range cfg.Rlimits {
		c.rlimits = append(c.rlimits, rlimit{uintptr(r.Resource), unix.Rlimit{Cur: r.Cur, Max: r.Max}})
	}
	c.nrlimit = len(c.rlimits)
	copy(c.ifreq[:], "lo")
	*(*uint16)(unsafe.Pointer(&c.ifreq[unix.IFNAMSIZ])) = unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING

	// The child's stdio must not sit on 0, 1 or 2 where it would be
	// overwritten by another one's dup3: move any that do.
	var stdio [3]int
	var tmp []int
	defer func() {
		for _, fd := range tmp {
			unix.Close(fd)
		}
	}()
	for i, f := range cfg.Stdio {
		if f == nil {
			return nil, fmt.Errorf("forkexec: stdio %d missing", i)
		}
		// Fd puts the file in blocking mode, as the command expects (and as
		// os/exec does).
		fd := int(f.Fd())
		if fd < 3 {
			nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				return nil, os.NewSyscallError("fcntl", err)
			}
			tmp = append(tmp, nfd)
			fd = nfd
		}
		stdio[i] = fd
	}
	c.stdio = stdio

	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer goR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		goW.Close()
		return nil, err
	}
	defer errW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		goW.Close()
		errR.Close()
		return nil, err
	}
	defer statusW.Close()
	// The child's ends must block; the parent's stay with the poller.
	c.goR, c.errW, c.statusW = int(goR.Fd()), int(errW.Fd()), int(statusW.Fd())
	keep := append([]int{c.goR, c.errW, c.statusW, stdio[0], stdio[1], stdio[2]}, c.join...)
	keep = append(keep, c.cgProcs...)
	if c.cgDir >= 0 {
		keep = append(keep, c.cgDir)
	}
	if c.socket {
		keep = append(keep, c.sockConn)
	}
	if c.deferred {
		keep = append(keep, c.reqConn)
	}
	c.closeRange = closeRanges(keep)
	// Descriptors the steps open on purpose (CloneTree) get numbers above
	// every one we keep.
	base := slices.Max(keep) + 1
	steps := slices.Clone(cfg.Steps)
	for i := range steps {
		st := &steps[i]
		if !st.useSlot {
			continue
		}
		fd := base + st.slot
		switch st.kind {
		case opOpenTree, opMoveMount, opClose, opOpenFile:
			st.flags = uintptr(fd)
		}
	}
	c.waitStep = slices.ContainsFunc(steps, func(st Step) bool { return st.kind == opWaitParent })
	// The command's cgroup files, opened by steps.
	for _, s := range cfg.CgroupProcsSlots {
		c.cgProcs = append(c.cgProcs, base+s)
	}
	c.ncg += len(cfg.CgroupProcsSlots)
	for _, s := range cfg.CgroupDirSlots {
		c.setCgroupDir(base + s)
	}
	if c.reusable {
		for i, s := range cfg.WritableSlots {
			c.writable[i] = int32(base + s)
		}
		c.nwritable = len(cfg.WritableSlots)
		c.lastPid = base + cfg.LastPidSlot
	}
	if c.ops, err = compileSteps(steps); err != nil {
		goW.Close()
		errR.Close()
		statusR.Close()
		return nil, err
	}

	pid, pidfd, release, errno := startInit(c)
	if errno != 0 {
		goW.Close()
		errR.Close()
		statusR.Close()
		return nil, &StepError{Stage: "clone", Err: errno}
	}
	return &Process{
		Pid:     pid,
		pidfd:   pidfd,
		release: release,
		c:       c,
		reqConn: reqMine,
		steps:   cfg.Steps,
		goW:     goW,
		errR:    errR,
		statusR: statusR,
	}, nil
}

// setCgroupDir makes the command born in the cgroup whose directory is
// open as fd (clone3 with CLONE_INTO_CGROUP). A deferred child calls it
// too, for each request's directory.
//
//go:nosplit
//go:norace
//go:nocheckptr
func (c *childData) setCgroupDir(fd int) {
	c.cgDir = fd
	c.cloneArgs = cloneArgs{Flags: uint64(forkFlags | unix.CLONE_INTO_CGROUP | c.cmdFlags), ExitSignal: uint64(syscall.SIGCHLD), Cgroup: uint64(fd)}
}

// linkBuffers points c's message headers at c's own buffers: the request
// a deferred child receives, and the byte and descriptor a socket child
// sends. Their lengths are set once, in Start; a copy of c (copyTo) is
// linked again, to its own buffers.
func (c *childData) linkBuffers() {
	if c.req != nil {
		c.reqIov.Base = (*byte)(unsafe.Pointer(c.req))
		c.reqMsg.Iov = &c.reqIov
		c.reqMsg.Control = &c.reqCmsg[0]
	}
	if c.socket {
		c.iov.Base = &c.iovByte[0]
		c.msg.Iov = &c.iov
		c.msg.Control = &c.cmsg[0]
	}
}

func compileSteps(steps []Step) ([]op, error) {
	ops := make([]op, len(steps))
	for i, s := range steps {
		o := op{kind: s.kind, flags: s.flags, mode: s.mode}
		if s.kind == opSethostname {
			o.flags = uintptr(len(s.a))
		}
		var err error
		for _, f := range []struct {
			dst **byte
			s   string
		}{{&o.a, s.a}, {&o.b, s.b}, {&o.c, s.c}, {&o.d, s.d}} {
			if f.s == "" {
				continue
			}
			if *f.dst, err = syscall.BytePtrFromString(f.s); err != nil {
				return nil, fmt.Errorf("forkexec: step %q: %w", s.Stage, err)
			}
		}
		ops[i] = o
	}
	return ops, nil
}

func bytePtrs(ss []string) ([]*byte, error) {
	p, err := syscall.SlicePtrFromStrings(ss)
	if err != nil {
		return nil, fmt.Errorf("forkexec: %w", err)
	}
	return p, nil
}

// closeRanges returns the ranges of descriptors to close so that only keep
// stays open.
func closeRanges(keep []int) [][2]uintptr {
	keep = slices.Clone(keep)
	slices.Sort(keep)
	keep = slices.Compact(keep)
	var r [][2]uintptr
	next := 0
	for _, k := range keep {
		if k > next {
			r = append(r, [2]uintptr{uintptr(next), uintptr(k - 1)})
		}
		next = k + 1
	}
	return append(r, [2]uintptr{uintptr(next), 0xffffffff})
}

// WriteIDMaps writes the child's user namespace ID maps, in the format of
// /proc/PID/uid_map. setgroups is denied first when denySetgroups is set,
// as an unprivileged writer must.
func (p *Process) WriteIDMaps(uidMap, gidMap string, denySetgroups bool) error {
	base := "/proc/" + strconv.Itoa(p.Pid) + "/"
	if denySetgroups {
		if err := os.WriteFile(base+"setgroups", []byte("deny"), 0); err != nil {
			return err
		}
	}
	if err := os.WriteFile(base+"uid_map", []byte(uidMap), 0); err != nil {
		return err
	}
	return os.WriteFile(base+"gid_map", []byte(gidMap), 0)
}

// Release lets the child run its setup and start the command, and waits
// until the command has been executed. A failure in the child comes back
// as a *StepError, after the child has been killed and reaped. When ctx
// ends first the child is killed and ctx's error returned.
func (p *Process) Release(ctx context.Context) error {
	var err error
	if !p.c.immediate || p.c.waitStep {
		_, err = p.goW.Write([]byte{1})
	}
	p.goW.Close()
	if err != nil {
		// A child that waits for the go-ahead only after some steps may
		// have failed one of them and gone: its record says which.
		if aerr := p.await(ctx, false); aerr != nil {
			return aerr
		}
		p.Close()
		return fmt.Errorf("forkexec: releasing the child: %w", err)
	}
	return p.await(ctx, false)
}

// await reads the error pipe: EOF means the command was executed, a
// record a failure or, for a deferred child, that its setup is done. With
// inPoll it waits in pollReadable, else in the runtime's poller.
func (p *Process) await(ctx context.Context, inPoll bool) error {
	var (
		buf [8]byte
		n   int
		err error
	)
	if inPoll {
		if err = pollReadable(ctx, p.errR); err == nil {
			n, err = io.ReadFull(p.errR, buf[:])
		}
	} else {
		stop := context.AfterFunc(ctx, func() { p.errR.SetReadDeadline(aLongTimeAgo) })
		n, err = io.ReadFull(p.errR, buf[:])
		stop()
	}
	if n == len(buf) {
		if idx := int32(nativeEndian.Uint32(buf[0:])); idx == stageReady || idx == stageStarted {
			return nil
		}
	}
	p.errR.Close()
	switch {
	case n == 0 && (err == io.EOF):
		// Closed on execve: the command runs.
		return nil
	case n == len(buf):
		idx := int32(nativeEndian.Uint32(buf[0:]))
		errno := syscall.Errno(nativeEndian.Uint32(buf[4:]))
		p.Close()
		return p.stepError(idx, errno)
	case ctx.Err() != nil:
		p.Close()
		return ctx.Err()
	default:
		p.Close()
		return fmt.Errorf("forkexec: reading the child's setup status: %w", err)
	}
}

// Command is a command for a deferred child (Config.Deferred).
type Command struct {
	Path    []string
	Argv    []string
	Env     []string
	Dir     string // "" keeps the working directory
	Stdio   [3]*os.File
	Rlimits []Rlimit
	// CgroupProcs are as Config.CgroupProcs.
	CgroupProcs []*os.File
	// CgroupDir is as Config.CgroupDir: the command is born in it.
	CgroupDir *os.File
	// Binds are detached mount trees (open_tree clones, their flags set)
	// that init attaches in the sandbox before it forks the command.
	Binds []TreeBind
}

// TreeBind attaches a detached mount tree at Target, which is made (a
// directory, or a file when Dir is false) if missing; its parent must
// exist.
type TreeBind struct {
	Tree   *os.File
	Target string
	Dir    bool
}

// maxRequestBinds bounds a request's binds.
const maxRequestBinds = 16

// Run gives a deferred child, released and set up, its command, and waits
// until the command has been executed. Errors are as Release's. A
// reusable child takes another command once Wait said it may
// (Exit.Reusable).
func (p *Process) Run(ctx context.Context, cmd *Command) error {
	if p.reqConn == nil {
		return errors.New("forkexec: not a deferred child, or not ready for a command")
	}
	if !p.c.reusable {
		defer func() {
			p.reqConn.Close()
			p.reqConn = nil
		}()
	}
	p.dir = cmd.Dir
	msg, err := p.c.request(cmd)
	if err != nil {
		p.Close()
		return err
	}
	fds := make([]int, 0, 3+len(cmd.CgroupProcs))
	for _, f := range cmd.Stdio {
		if f == nil {
			p.Close()
			return errors.New("forkexec: stdio missing")
		}
		fds = append(fds, int(f.Fd()))
	}
	for _, f := range cmd.CgroupProcs {
		fds = append(fds, int(f.Fd()))
	}
	if cmd.CgroupDir != nil {
		fds = append(fds, int(cmd.CgroupDir.Fd()))
	}
	for _, b := range cmd.Binds {
		fds = append(fds, int(b.Tree.Fd()))
	}
	if err := unix.Sendmsg(int(p.reqConn.Fd()), msg, unix.UnixRights(fds...), nil, 0); err != nil {
		p.Close()
		return fmt.Errorf("forkexec: sending the command: %w", err)
	}
	return p.await(ctx, p.c.reusable)
}

// request serializes cmd into the bytes of a request as it will sit in
// the child's copy of c.req, whose address is the same as here: its
// pointers point into that copy.
func (c *childData) request(cmd *Command) ([]byte, error) {
	if len(cmd.Argv) == 0 || len(cmd.Path) == 0 {
		return nil, errors.New("forkexec: no command")
	}
	if len(cmd.CgroupProcs) > maxCgroupProcs || len(cmd.Rlimits) > len(c.req.Rlimits) || len(cmd.Binds) > maxRequestBinds {
		return nil, errors.New("forkexec: too many cgroup files, rlimits or binds")
	}
	var r request
	base := uintptr(unsafe.Pointer(c.req))
	if c.reqAddr != 0 {
		base = c.reqAddr // the zygote's copy
	}
	base += unsafe.Offsetof(r.Data)
	data := r.Data[:0]
	ptrSize := int(unsafe.Sizeof(uintptr(0)))
	// put appends strs as NUL-terminated strings after a nil-terminated
	// array of their addresses, and returns the array's address.
	put := func(strs []string) (uintptr, error) {
		arr := len(data)
		data = append(data, make([]byte, (len(strs)+1)*ptrSize)...)
		for i, s := range strs {
			if strings.IndexByte(s, 0) >= 0 {
				return 0, fmt.Errorf("forkexec: NUL byte in %q", s)
			}
			if len(data)+len(s)+1 > cap(data) {
				return 0, errors.New("forkexec: command too long for a deferred child")
			}
			addr := base + uintptr(len(data))
			data = append(append(data, s...), 0)
			nativeEndian.PutUint64(data[arr+i*ptrSize:], uint64(addr))
		}
		return base + uintptr(arr), nil
	}
	off := func(addr uintptr) int32 { return int32(addr - base) }
	r.DirOff = -1
	for _, f := range []struct {
		dst  *int32
		strs []string
	}{{&r.ArgvOff, cmd.Argv}, {&r.EnvvOff, cmd.Env}, {&r.PathOff, cmd.Path}} {
		a, err := put(f.strs)
		if err != nil {
			return nil, err
		}
		*f.dst = off(a)
	}
	if cmd.Dir != "" {
		a, err := put([]string{cmd.Dir})
		if err != nil {
			return nil, err
		}
		r.DirOff = off(uintptr(nativeEndian.Uint64(data[off(a):])))
	}
	for i, b := range cmd.Binds {
		a, err := put([]string{b.Target})
		if err != nil {
			return nil, err
		}
		r.BindOff[i] = off(uintptr(nativeEndian.Uint64(data[off(a):])))
		r.BindDir[i] = b.Dir
	}
	r.Nbind = int32(len(cmd.Binds))
	r.Ncg = int32(len(cmd.CgroupProcs))
	if cmd.CgroupDir != nil {
		r.CgDir = 1
	}
	r.Nrlimit = int32(len(cmd.Rlimits))
	for i, rl := range cmd.Rlimits {
		r.Rlimits[i] = rlimit{uintptr(rl.Resource), unix.Rlimit{Cur: rl.Cur, Max: rl.Max}}
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Offsetof(r.Data)+uintptr(len(data)))
	return append([]byte(nil), b...), nil
}

func (p *Process) stepError(idx int32, errno syscall.Errno) error {
	if idx >= 0 && int(idx) < len(p.steps) {
		s := p.steps[idx]
		return &StepError{Stage: s.Stage, Path: s.Path, Err: errno}
	}
	if name, ok := fixedStages[idx]; ok {
		e := &StepError{Stage: name, Err: errno}
		if idx == stageChdir {
			e.Path = p.dir
		}
		return e
	}
	return &StepError{Stage: "stage " + strconv.Itoa(int(idx)), Err: errno}
}

// Kill sends SIGKILL to init, which ends every process of its PID
// namespace. It is safe after the process has been reaped.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	err := unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
	if err == unix.ESRCH {
		err = nil
	}
	return err
}

// Wait waits for the command to end and for init to exit, and reaps init.
// When init reported, Exit.Reported is true and Status and Rusage are the
// command's. A reusable child that reported its sandbox clean is not
// waited for: it waits for its next command (Exit.Reusable).
func (p *Process) Wait() (*Exit, error) {
	var ex Exit
	var buf [unsafe.Sizeof(report{})]byte
	if p.c.reusable {
		// An error leaves it to the read.
		pollReadable(context.Background(), p.statusR)
	}
	n, err := io.ReadFull(p.statusR, buf[:])
	if n == len(buf) {
		rep := (*report)(unsafe.Pointer(&buf[0]))
		ex.Reported = true
		ex.Status = syscall.WaitStatus(rep.Status)
		ex.Rusage = rep.Rusage
		if rep.Clean != 0 && p.c.reusable {
			ex.Reusable = true
			return &ex, nil
		}
	} else if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		p.Kill()
	}
	p.statusR.Close()
	ws, werr := p.reap()
	ex.InitStatus = ws
	if werr != nil {
		return nil, werr
	}
	return &ex, nil
}

// reap waits for init and closes its pidfd.
func (p *Process) reap() (syscall.WaitStatus, error) {
	ws, err := p.waitPidfd()
	p.mu.Lock()
	p.reaped = true
	unix.Close(p.pidfd)
	if err == nil && p.release != nil {
		p.release()
		p.release = nil
	}
	p.mu.Unlock()
	return ws, err
}

// waitPidfd waits for init through (a copy of) its pidfd, which polls
// readable once init has exited, in the runtime's poller, and reaps it. A
// wait4 that blocks while init tears its namespaces down (0.2 ms) costs the
// caller's thread its P, handed to another thread and taken back:
// BenchmarkRun 1.85 -> 1.79 ms.
func (p *Process) waitPidfd() (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	fd, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return waitPid(p.Pid)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return waitPid(p.Pid)
	}
	var werr error
	err = rc.Read(func(uintptr) bool {
		var pid int
		for {
			pid, werr = syscall.Wait4(p.Pid, &ws, syscall.WNOHANG, nil)
			if werr != syscall.EINTR {
				break
			}
		}
		return werr != nil || pid != 0 // else: not yet, wait for the pidfd
	})
	if err != nil {
		return waitPid(p.Pid)
	}
	if werr != nil {
		return ws, os.NewSyscallError("wait4", werr)
	}
	return ws, nil
}

// waitPid waits for the child pid to exit and reaps it.
func waitPid(pid int) (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return ws, os.NewSyscallError("wait4", err)
		}
		return ws, nil
	}
}

// Close kills and reaps the child if that has not happened yet and frees
// what Start opened. It is for failure paths; it is idempotent.
func (p *Process) Close() {
	p.mu.Lock()
	reaped := p.reaped
	p.mu.Unlock()
	// Kill first: a reusable child's Run or Wait, blocked in poll on
	// errR or statusR, holds that file open until the child is gone.
	if !reaped {
		p.Kill()
	}
	if p.reqConn != nil {
		p.reqConn.Close()
	}
	p.goW.Close()
	p.errR.Close()
	p.statusR.Close()
	if !reaped {
		p.reap()
	}
}

// pollReadable blocks the calling thread in poll(2) until f is readable or
// at its end, or until ctx is done, when it returns ctx.Err(). f stays
// open meanwhile: its Close waits for the poll to return.
//
// It first waits up to rawPollWindow in a ppoll the scheduler does not see
// (a raw system call: the goroutine keeps its P). A poll the runtime knows
// to block loses its P after a sysmon tick (20 us) whenever no P is idle,
// and once sysmon polled at that rate it went on retaking: in about half
// of the BenchmarkPoolRunParallel runs the handoffs doubled a pooled run's
// context switches (8 -> 16-20) and its time (0.59 -> 0.76 ms/op). With
// the window, runs were steady at 0.60-0.64 ms/op and 8 switches. A run
// that takes longer goes on in a blocking poll: the P is held no longer
// than a goroutine computing for that long would hold it.
func pollReadable(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// The second descriptor, an eventfd that a cancel of ctx writes to, is
	// ignored by poll while it is -1.
	fds := [2]unix.PollFd{{Events: unix.POLLIN}, {Fd: -1, Events: unix.POLLIN}}
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := newCanceler(ctx)
		if err != nil {
			return err
		}
		defer c.close()
		fds[1].Fd = int32(c.fd)
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		fds[0].Fd = int32(fd)
		ts := unix.NsecToTimespec(int64(rawPollWindow))
		r, _, e := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if e == 0 && r > 0 {
			return
		}
		for {
			if _, perr = unix.Poll(fds[:], -1); perr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if perr != nil {
		return os.NewSyscallError("poll", perr)
	}
	if fds[1].Revents != 0 {
		return ctx.Err()
	}
	return nil
}

// rawPollWindow bounds pollReadable's wait in a raw ppoll.
const rawPollWindow = time.Millisecond

// canceler is an eventfd written to when its context is done.
type canceler struct {
	mu   sync.Mutex
	fd   int // -1 once closed
	stop func() bool
}

var eventOne = [8]byte{0: 1} // an eventfd increment of 1 (little-endian)

func newCanceler(ctx context.Context) (*canceler, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	c := &canceler{fd: fd}
	c.stop = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.fd >= 0 {
			unix.Write(c.fd, eventOne[:])
		}
	})
	return c, nil
}

// close stops watching the context and closes the eventfd, which a late
// cancel can no longer write to.
func (c *canceler) close() {
	c.stop()
	c.mu.Lock()
	unix.Close(c.fd)
	c.fd = -1
	c.mu.Unlock()
}

var (
	nativeEndian = binary.NativeEndian
	aLongTimeAgo = time.Unix(1, 0)
)

// CommandPid returns the pid, in the caller's PID namespace, of the
// command the child forked (its only child), from
// /proc/PID/task/PID/children.
func (p *Process) CommandPid() (int, error) {
	pid := strconv.Itoa(p.Pid)
	b, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, os.ErrProcessDone
	}
	return strconv.Atoi(string(f[0]))
}

// Reaped reports whether init has been waited for: every process of its
// namespaces is gone.
func (p *Process) Reaped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reaped
}

// PR_SET_PDEATHSIG fires when the thread that made the child ends, not the
// process: a Go thread ends when a goroutine locked to it exits (some
// libraries do that on purpose, to throw away a thread whose namespaces
// they changed). A sandbox cloned from such a thread would be killed with
// it. Every clone is therefore made by one goroutine locked, for the life
// of the process, to a thread of its own.
var forker struct {
	once sync.Once
	reqs chan func()
}

// onForkerThread runs f on the forker thread and waits for it.
func onForkerThread(f func()) {
	forker.once.Do(func() {
		forker.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range forker.reqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	forker.reqs <- func() {
		f()
		close(done)
	}
	<-done
}

// forkOnForkerThread clones init directly, from the forker thread.
func forkOnForkerThread(c *childData) (pid, pidfd int, errno syscall.Errno) {
	onForkerThread(func() { pid, pidfd, errno = forkChild(c) })
	return pid, pidfd, errno
}
