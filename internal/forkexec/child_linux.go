package forkexec

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkChild clones the sandbox's init from this process (see the zygote
// for the usual way). In the parent it returns init's pid and pidfd. The
// child never returns: it runs initMain.
//
// Everything after the clone runs in a copy of the process with one thread
// and a poisoned stack guard: no allocation, no stack growth, no write
// barriers, no calls but raw system calls and nosplit functions.
//
//go:noinline
//go:norace
//go:nocheckptr
func forkChild(c *childData) (pid int, pidfd int, errno syscall.Errno) {
	syscall.ForkLock.Lock()
	runtime_BeforeFork()
	r1, _, err1 := syscall.RawSyscall6(syscall.SYS_CLONE,
		c.cloneflags|unix.CLONE_PIDFD|uintptr(syscall.SIGCHLD),
		0, uintptr(unsafe.Pointer(&c.pidfd)), 0, 0, 0)
	if err1 != 0 || r1 != 0 {
		// The parent.
		runtime_AfterFork()
		syscall.ForkLock.Unlock()
		if err1 != 0 {
			return 0, -1, err1
		}
		return int(r1), int(c.pidfd), 0
	}
	// The child: PID 1 of the new PID namespace.
	runtime_AfterForkInChild()
	initMain(c)
	return 0, -1, 0 // not reached
}

// initMain is init, in a fresh clone: it sets up the sandbox, forks and
// executes the command, reports how it ended, and exits. It never returns.
// All variables are declared up front so that the gotos stay legal.
//
//go:nosplit
//go:norace
//go:nocheckptr
func initMain(c *childData) {
	var (
		r1      uintptr
		err1    syscall.Errno
		idx     int32
		i       int
		cmdPid  uintptr
		exit    uintptr
		execRaw uintptr
		bornIn  bool
	)

	exit = 1

	// Keep only our own descriptors: the parent's other files (other
	// sandboxes' pipes among them) must not stay open in here.
	for i = 0; i < len(c.closeRange); i++ {
		_, _, err1 = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, c.closeRange[i][0], c.closeRange[i][1], 0)
		if err1 != 0 {
			idx = stageCloseInheriteds
			goto fail
		}
	}
	syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)

	// /proc/1/cmdline would show the caller's command line, arguments
	// and all, to the sandbox: blank init's copy of it (and of the
	// environment), through /proc/self/mem while the host's /proc is here.
	if c.argEnd > c.argStart && !c.fromZygote {
		r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(c.memPath)), unix.O_RDWR|unix.O_CLOEXEC, 0, 0, 0)
		if err1 == 0 {
			for cmdPid = c.argStart; cmdPid < c.argEnd; cmdPid += uintptr(len(c.zeros)) {
				syscall.RawSyscall6(syscall.SYS_PWRITE64, r1, uintptr(unsafe.Pointer(&c.zeros[0])), min(uintptr(len(c.zeros)), c.argEnd-cmdPid), cmdPid, 0, 0)
			}
			for cmdPid = c.envStart; cmdPid < c.envEnd; cmdPid += uintptr(len(c.zeros)) {
				syscall.RawSyscall6(syscall.SYS_PWRITE64, r1, uintptr(unsafe.Pointer(&c.zeros[0])), min(uintptr(len(c.zeros)), c.envEnd-cmdPid), cmdPid, 0, 0)
			}
			syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
		}
		cmdPid = 0
	}

	// Wait for the go-ahead: by then the parent has put us in our cgroup
	// and written our ID maps (unless a WaitParent step waits for it).
	if !c.immediate && !c.waitStep {
		waitGoAhead(c)
	}
	if !c.waitStep {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.goR), 0, 0)
	}
	// The OOM killer's first choice is the command, which inherits this
	// (a forked or vforked child shares init's non-dumpable memory, whose
	// /proc files belong to root: it could not write it itself without
	// root).
	if c.oomPath != nil {
		r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(c.oomPath)), unix.O_WRONLY|unix.O_CLOEXEC, 0, 0, 0)
		if err1 == 0 {
			syscall.RawSyscall(syscall.SYS_WRITE, r1, uintptr(unsafe.Pointer(&c.oomValue[0])), uintptr(len(c.oomValue)))
			syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
		}
	}
	// init is a copy of the caller's whole address space: keep the
	// command from reading it through /proc/1/mem or ptrace. (Not before
	// the go-ahead: an unprivileged parent writes our ID maps, and the
	// /proc files of a non-dumpable process belong to root.)
	// (A child that joins an existing sandbox stays outside its PID
	// namespace, where the command cannot reach it, and stays dumpable so
	// that its unprivileged parent can find the command through /proc.)
	if c.cloneflags&unix.CLONE_NEWPID != 0 {
		syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_DUMPABLE, 0, 0)
	}

	for i = 0; i < len(c.join); i++ {
		_, _, err1 = syscall.RawSyscall(unix.SYS_SETNS, uintptr(c.join[i]), 0, 0)
		if err1 != 0 {
			idx = stageSetns
			goto fail
		}
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.join[i]), 0, 0)
	}

	// Modes in the steps are exact.
	syscall.RawSyscall(syscall.SYS_UMASK, 0, 0, 0)

	if idx, err1 = runSteps(c); err1 != 0 {
		goto fail
	}

	if c.socket {
		// Make a socket in the namespaces joined, and hand it over.
		if c.sendRoot {
			r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(c.rootPath)),
				unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0, 0, 0)
		} else {
			r1, _, err1 = syscall.RawSyscall(syscall.SYS_SOCKET, c.sockArgs[0], c.sockArgs[1], c.sockArgs[2])
		}
		if err1 != 0 {
			idx = stageSocket
			goto fail
		}
		*(*int32)(unsafe.Pointer(&c.cmsg[unix.SizeofCmsghdr])) = int32(r1)
		_, _, err1 = syscall.RawSyscall(syscall.SYS_SENDMSG, uintptr(c.sockConn), uintptr(unsafe.Pointer(&c.msg)), 0)
		if err1 != 0 {
			idx = stageSocket
			goto fail
		}
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	if c.pause {
		// Set up: say so by closing the error pipe, then stay as init.
		// With SIGCHLD ignored, the kernel reaps whatever is reparented
		// here; ppoll with nothing to wait for sleeps until init is killed.
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.errW), 0, 0)
		for i = 0; i < 3; i++ {
			syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.stdio[i]), 0, 0)
		}
		c.sigdfl[0] = 1 // SIG_IGN
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGCHLD), uintptr(unsafe.Pointer(&c.sigdfl)), 0, 8, 0, 0)
		for {
			syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
		}
	}

	if c.deferred {
		// Set up: say so, and wait for the command.
		for i = 0; i < c.nwritable; i++ {
			if !freeSpace(c, i, true) {
				c.reusable = false
			}
		}
		if c.reusable && c.dropCaps && !c.bsetEmpty {
			// The commands' bounding set, dropped once for all of them
			// (41 prctl calls a command saved): it limits what an execve
			// grants, and init executes nothing.
			if err1 = dropBoundingSet(c.capLast); err1 != 0 {
				idx = stageCapabilities
				goto fail
			}
		}
		if c.initSeccomp != nil {
			// From here on, init and each command until it adds its own
			// filter make only ReusableSyscalls, which this one allows.
			if c.noNewPrivs {
				if err1 = setNoNewPrivs(); err1 != 0 {
					idx = stageNoNewPrivs
					goto fail
				}
			}
			if err1 = installFilter(c.initSeccomp); err1 != 0 {
				idx = stageSeccomp
				goto fail
			}
		}
		sendStage(c, stageReady, 0)
	} else {
		c.argvp = uintptr(unsafe.Pointer(&c.argv[0]))
		c.envvp = uintptr(unsafe.Pointer(&c.envv[0]))
		c.pathp = unsafe.Pointer(&c.path[0])
	}

next:
	if c.deferred {
		if idx, err1 = receiveRequest(c); err1 != 0 {
			goto fail
		}
	}

	// Fork the command; init stays behind. Where it can, this is a vfork:
	// init sleeps until the command has executed, and the child must
	// leave init's memory as it found it (it writes only locals that init
	// sets again below, and errBuf on its way out).
	bornIn = false
	if c.cgDir >= 0 {
		r1, execRaw = rawVfork3(unsafe.Pointer(&c.cloneArgs), unsafe.Sizeof(c.cloneArgs))
		err1 = syscall.Errno(execRaw)
		bornIn = err1 == 0
	}
	if !bornIn {
		// No cgroup directory, or clone3 refused (a kernel before 5.7):
		// the command moves itself in through CgroupProcs.
		r1, execRaw = rawVfork(forkFlags | c.cmdFlags | uintptr(syscall.SIGCHLD))
		err1 = syscall.Errno(execRaw)
	}
	if err1 != 0 {
		idx = stageFork
		goto fail
	}
	if r1 == 0 {
		commandMain(c, bornIn)
	}
	cmdPid = r1
	for i = 0; i < c.ncg; i++ {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.cgProcs[i]), 0, 0)
	}
	if c.cgDir >= 0 {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.cgDir), 0, 0)
		c.cgDir = -1
	}
	for i = 0; i < 3; i++ {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.stdio[i]), 0, 0)
	}
	if c.reusable {
		// The error pipe serves the next command too: say the command
		// started (after its own failure record, if it failed).
		sendStage(c, stageStarted, 0)
	} else {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.errW), 0, 0)
	}
	// Reap every process of the namespace until the command ends.
	for {
		r1, _, err1 = syscall.RawSyscall6(syscall.SYS_WAIT4, ^uintptr(0), uintptr(unsafe.Pointer(&c.rep.Status)), 0,
			uintptr(unsafe.Pointer(&c.rep.Rusage)), 0, 0)
		if err1 == syscall.EINTR {
			continue
		}
		if err1 != 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 2, 0, 0)
		}
		if r1 == cmdPid {
			break
		}
	}
	c.rep.Clean = 0
	if c.reusable && cleanUp(c) {
		c.rep.Clean = 1
	}
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.statusW), uintptr(unsafe.Pointer(&c.rep)), unsafe.Sizeof(c.rep))
	if c.rep.Clean != 0 {
		goto next
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)

fail:
	childFail(c, idx, err1, exit)
}

// ReusableSyscalls are the system calls a Reusable child's init makes
// once it is set up, and its commands make before they install their own
// filter: what Config.InitSeccomp must allow. (TestReusableSyscalls runs
// a pool under a filter that allows nothing else.)
var ReusableSyscalls = []string{
	// init: a request, its binds, the command's fork, its end, the
	// clean-up and the report.
	"recvmsg", "read", "write", "close", "openat", "mkdirat", "unlinkat", "move_mount", "umount2",
	"chdir", "getcwd", "clone", "clone3", "wait4", "kill", "sched_yield", "fstatfs", "pwrite64",
	"exit_group", "exit", "rt_sigreturn", "restart_syscall",
	// The command, between the fork and its filter (see commandMain).
	"unshare", "setsid", "prlimit64", "prctl", "setgroups", "setresgid", "setresuid", "capset",
	"dup3", "umask", "rt_sigaction", "rt_sigprocmask", "close_range", "seccomp",
}

// receiveRequest waits for a deferred child's command and takes it in:
// its descriptors, its own binds, its rlimits, working directory and
// arguments. At EOF (nobody wants a command) init exits.
//
//go:nosplit
//go:norace
//go:nocheckptr
func receiveRequest(c *childData) (idx int32, err1 syscall.Errno) {
	var (
		r1   uintptr
		fd   uintptr
		hdr  *unix.Cmsghdr
		nfds int
		i    int
	)
	c.reqMsg.Controllen = uint64(len(c.reqCmsg))
	for {
		r1, _, err1 = syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(c.reqConn), uintptr(unsafe.Pointer(&c.reqMsg)), unix.MSG_CMSG_CLOEXEC)
		if err1 != syscall.EINTR {
			break
		}
	}
	if err1 != 0 || r1 == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	if !c.reusable {
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.reqConn), 0, 0)
	}
	hdr = (*unix.Cmsghdr)(unsafe.Pointer(&c.reqCmsg[0]))
	nfds = int(hdr.Len-unix.SizeofCmsghdr) / 4
	if c.reqMsg.Controllen < unix.SizeofCmsghdr || hdr.Level != unix.SOL_SOCKET || hdr.Type != unix.SCM_RIGHTS ||
		c.req.CgDir < 0 || c.req.CgDir > 1 || nfds != 3+int(c.req.Ncg)+int(c.req.CgDir)+int(c.req.Nbind) ||
		int(c.req.Ncg) > len(c.cgProcs) || int(c.req.Nrlimit) > len(c.rlimits) || int(c.req.Nbind) > maxRequestBinds {
		return stageRequest, syscall.EINVAL
	}
	for i = 0; i < 3+int(c.req.Ncg); i++ {
		if i < 3 {
			c.stdio[i] = int(*(*int32)(unsafe.Pointer(&c.reqCmsg[unix.SizeofCmsghdr+4*i])))
		} else {
			c.cgProcs[i-3] = int(*(*int32)(unsafe.Pointer(&c.reqCmsg[unix.SizeofCmsghdr+4*i])))
		}
	}
	if c.req.CgDir != 0 {
		c.setCgroupDir(int(*(*int32)(unsafe.Pointer(&c.reqCmsg[unix.SizeofCmsghdr+4*(3+int(c.req.Ncg))]))))
	}
	// The run's own binds: mount trees the parent cloned, attached here,
	// in this sandbox's mount namespace (for this run only: a reusable
	// child detaches them when the command ends, and removes the targets
	// it made).
	for i = 0; i < int(c.req.Nbind); i++ {
		fd = uintptr(*(*int32)(unsafe.Pointer(&c.reqCmsg[unix.SizeofCmsghdr+4*(3+int(c.req.Ncg)+int(c.req.CgDir)+i)])))
		c.bindMade[i] = false
		if c.req.BindDir[i] {
			_, _, err1 = syscall.RawSyscall(syscall.SYS_MKDIRAT, atFdcwd, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])), 0o755)
			c.bindMade[i] = err1 == 0
		} else {
			r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])),
				unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644, 0, 0)
			c.bindMade[i] = err1 == 0
			if err1 == syscall.EEXIST {
				r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])),
					unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644, 0, 0)
			}
			if err1 == 0 {
				syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
			}
		}
		if err1 != 0 && err1 != syscall.EEXIST {
			return stageRequestBind, err1
		}
		_, _, err1 = syscall.RawSyscall6(unix.SYS_MOVE_MOUNT, fd, uintptr(unsafe.Pointer(c.emptyPath)),
			atFdcwd, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])), unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_SYMLINKS, 0)
		if err1 != 0 {
			return stageRequestBind, err1
		}
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	}
	c.ncg = int(c.req.Ncg)
	c.nrlimit = int(c.req.Nrlimit)
	for i = 0; i < c.nrlimit; i++ {
		c.rlimits[i] = c.req.Rlimits[i]
	}
	if c.req.DirOff >= 0 {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(&c.req.Data[c.req.DirOff])), 0, 0)
		if err1 == 0 {
			err1 = checkCwd(c) // as the CheckCwd step
		}
		if err1 != 0 {
			return stageChdir, err1
		}
	} else if c.reusable {
		// Where the setup left init, not where the last command ran.
		_, _, err1 = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(c.rootPath)), 0, 0)
		if err1 != 0 {
			return stageChdir, err1
		}
	}
	c.argvp = uintptr(unsafe.Pointer(&c.req.Data[c.req.ArgvOff]))
	c.envvp = uintptr(unsafe.Pointer(&c.req.Data[c.req.EnvvOff]))
	c.pathp = unsafe.Pointer(&c.req.Data[c.req.PathOff])
	return 0, 0
}

// cleanUp, in a reusable child whose command has ended, ends what the
// command left behind and reports whether the sandbox is as the setup
// left it, ready for another command: no process but init, the run's own
// binds gone, as many free blocks and inodes on each writable filesystem
// as after the setup, and the PID namespace's next PID 2 again.
//
//go:nosplit
//go:norace
//go:nocheckptr
func cleanUp(c *childData) bool {
	var (
		r1    uintptr
		err1  syscall.Errno
		i     int
		tries int
	)
	// kill(-1) reaches every process of the namespace but init, zombies
	// included until they are reaped: repeat until it finds none.
	for {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_KILL, ^uintptr(0), uintptr(syscall.SIGKILL), 0)
		if err1 != 0 {
			break // ESRCH: nobody left
		}
		_, _, err1 = syscall.RawSyscall6(syscall.SYS_WAIT4, ^uintptr(0), 0, unix.WALL, 0, 0, 0)
		if err1 == syscall.ECHILD {
			// One still on its way to being reparented here.
			if tries++; tries > 10000 {
				return false
			}
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
	for i = 0; i < int(c.req.Nbind); i++ {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_UMOUNT2, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])), unix.MNT_DETACH, 0)
		if err1 != 0 {
			return false
		}
		if c.bindMade[i] {
			r1 = 0
			if c.req.BindDir[i] {
				r1 = unix.AT_REMOVEDIR
			}
			_, _, err1 = syscall.RawSyscall(syscall.SYS_UNLINKAT, atFdcwd, uintptr(unsafe.Pointer(&c.req.Data[c.req.BindOff[i]])), r1)
			if err1 != 0 {
				return false
			}
		}
	}
	for i = 0; i < c.nwritable; i++ {
		if !freeSpace(c, i, false) {
			return false
		}
	}
	_, _, err1 = syscall.RawSyscall6(syscall.SYS_PWRITE64, uintptr(c.lastPid), uintptr(unsafe.Pointer(&c.one[0])), 1, 0, 0, 0)
	return err1 == 0
}

// freeSpace reads the free blocks and inodes of the writable filesystem i
// (see Config.WritableSlots): it records them when record is set, and
// otherwise reports whether they are as recorded.
//
//go:nosplit
//go:norace
//go:nocheckptr
func freeSpace(c *childData, i int, record bool) bool {
	_, _, err1 := syscall.RawSyscall(syscall.SYS_FSTATFS, uintptr(c.writable[i]), uintptr(unsafe.Pointer(&c.statfs)), 0)
	if err1 != 0 {
		return false
	}
	if record {
		c.free[i][0], c.free[i][1] = c.statfs.Bfree, c.statfs.Ffree
		return true
	}
	return c.free[i][0] == c.statfs.Bfree && c.free[i][1] == c.statfs.Ffree
}

// commandMain is the command's side of init's fork: it moves into the
// command's cgroup, drops what the command must not have and executes it.
// It never returns.
//
//go:nosplit
//go:norace
//go:nocheckptr
func commandMain(c *childData, bornIn bool) {
	var (
		r1      uintptr
		err1    syscall.Errno
		execErr syscall.Errno
		idx     int32
		i       int
	)
	// Into the command's cgroup, before anything else it does (unless
	// clone3 made it there).
	for i = 0; i < c.ncg && !bornIn; i++ {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.cgProcs[i]), uintptr(unsafe.Pointer(&c.zero[0])), 1)
		if err1 != 0 {
			idx = stageJoinCgroup
			goto fail
		}
	}
	if c.cgroupNS {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_UNSHARE, unix.CLONE_NEWCGROUP, 0, 0)
		if err1 != 0 {
			idx = stageUnshareCgroup
			goto fail
		}
	}
	_, _, err1 = syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0)
	if err1 != 0 {
		idx = stageSetsid
		goto fail
	}
	// Rlimits while CAP_SYS_RESOURCE (if the caller had it) is still ours.
	for i = 0; i < c.nrlimit; i++ {
		_, _, err1 = syscall.RawSyscall6(syscall.SYS_PRLIMIT64, 0, c.rlimits[i].resource,
			uintptr(unsafe.Pointer(&c.rlimits[i].lim)), 0, 0, 0)
		if err1 != 0 {
			idx = stageRlimit
			goto fail
		}
	}
	if c.dropCaps {
		// The bounding and ambient sets first, while CAP_SETPCAP is
		// still ours; permitted and effective after the uid change. (A
		// reusable init dropped the bounding set before its first
		// command; one from the zygote has it empty already.)
		if !c.reusable && !c.bsetEmpty {
			if err1 = dropBoundingSet(c.capLast); err1 != 0 {
				idx = stageCapabilities
				goto fail
			}
		}
		_, _, err1 = syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0)
		if err1 != 0 {
			idx = stageCapabilities
			goto fail
		}
	}
	if c.setCreds && !c.keepGroups {
		if len(c.groups) > 0 {
			_, _, err1 = syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(c.groups)), uintptr(unsafe.Pointer(&c.groups[0])), 0)
		} else {
			_, _, err1 = syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0)
		}
		if err1 != 0 {
			idx = stageSetgroups
			goto fail
		}
	}
	if c.setCreds {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(c.gid), uintptr(c.gid), uintptr(c.gid))
		if err1 != 0 {
			idx = stageSetgid
			goto fail
		}
		_, _, err1 = syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(c.uid), uintptr(c.uid), uintptr(c.uid))
		if err1 != 0 {
			idx = stageSetuid
			goto fail
		}
	}
	if c.dropCaps {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&c.capHdr)), uintptr(unsafe.Pointer(&c.capData[0])), 0)
		if err1 != 0 {
			idx = stageCapabilities
			goto fail
		}
	}
	for i = 0; i < 3; i++ {
		_, _, err1 = syscall.RawSyscall(syscall.SYS_DUP3, uintptr(c.stdio[i]), uintptr(i), 0)
		if err1 != 0 {
			idx = stageStdio
			goto fail
		}
	}
	syscall.RawSyscall(syscall.SYS_UMASK, 0o022, 0, 0)
	// A normal process starts with default signal dispositions and an
	// empty mask, whatever the Go program had. (The zygote reset every
	// disposition when it started.)
	for i = 1; i <= 64 && !c.fromZygote; i++ {
		if i == int(syscall.SIGKILL) || i == int(syscall.SIGSTOP) {
			continue
		}
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(i), uintptr(unsafe.Pointer(&c.sigdfl)), 0, 8, 0, 0)
	}
	_, _, err1 = syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&c.sigmask)), 0, 8, 0, 0)
	if err1 != 0 {
		idx = stageSignals
		goto fail
	}
	if c.noNewPrivs {
		if err1 = setNoNewPrivs(); err1 != 0 {
			idx = stageNoNewPrivs
			goto fail
		}
	}
	// Every descriptor above 2 closes on execve; the error pipe stays
	// usable until then.
	_, _, err1 = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, 3, ^uintptr(0)>>32, unix.CLOSE_RANGE_CLOEXEC)
	if err1 != 0 {
		idx = stageCloseFds
		goto fail
	}
	if c.seccomp != nil {
		if err1 = installFilter(c.seccomp); err1 != 0 {
			idx = stageSeccomp
			goto fail
		}
	}
	// As execvp: try each candidate; a missing one is skipped, a denied
	// one remembered, anything else is final.
	execErr = syscall.ENOENT
	for i = 0; ; i++ {
		r1 = *(*uintptr)(unsafe.Add(c.pathp, i*int(unsafe.Sizeof(uintptr(0)))))
		if r1 == 0 {
			break
		}
		_, _, err1 = syscall.RawSyscall(syscall.SYS_EXECVE, r1, c.argvp, c.envvp)
		if err1 == syscall.ENOENT || err1 == syscall.ENOTDIR {
			continue
		}
		execErr = err1
		if err1 != syscall.EACCES {
			break
		}
	}
	err1 = execErr
	idx = stageExecve
fail:
	childFail(c, idx, err1, 127)
}

// checkCwd fails unless the working directory is a path inside the root
// (see CheckCwd).
//
//go:nosplit
//go:norace
//go:nocheckptr
func checkCwd(c *childData) syscall.Errno {
	_, _, err1 := syscall.RawSyscall6(syscall.SYS_GETCWD, uintptr(unsafe.Pointer(&c.cwdBuf[0])), uintptr(len(c.cwdBuf)), 0, 0, 0, 0)
	if err1 == 0 && c.cwdBuf[0] != '/' {
		err1 = syscall.ENOENT
	}
	return err1
}

// waitGoAhead reads the parent's go-ahead byte. EOF means the parent gave
// up on us: exit.
//
//go:nosplit
//go:norace
//go:nocheckptr
func waitGoAhead(c *childData) {
	var (
		r1   uintptr
		err1 syscall.Errno
	)
	for {
		// RawSyscall6, not RawSyscall: this runs deep in the nosplit
		// chain of runSteps.
		r1, _, err1 = syscall.RawSyscall6(syscall.SYS_READ, uintptr(c.goR), uintptr(unsafe.Pointer(&c.readByte[0])), 1, 0, 0, 0)
		if err1 != syscall.EINTR {
			break
		}
	}
	if err1 != 0 || r1 != 1 {
		syscall.RawSyscall6(syscall.SYS_EXIT_GROUP, 1, 0, 0, 0, 0, 0)
	}
}

// setNoNewPrivs sets no_new_privs, which a filter needs without
// CAP_SYS_ADMIN.
//
//go:nosplit
//go:norace
//go:nocheckptr
func setNoNewPrivs() syscall.Errno {
	_, _, err1 := syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0)
	return err1
}

// installFilter installs the seccomp filter f on the calling thread.
//
//go:nosplit
//go:norace
//go:nocheckptr
func installFilter(f *unix.SockFprog) syscall.Errno {
	_, _, err1 := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(f)))
	return err1
}

// dropBoundingSet empties the capability bounding set, whose highest
// capability is last (capLast).
//
//go:nosplit
//go:norace
//go:nocheckptr
func dropBoundingSet(last uintptr) syscall.Errno {
	for i := uintptr(0); i <= last; i++ {
		if _, _, err1 := syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, i, 0, 0, 0, 0); err1 != 0 {
			return err1
		}
	}
	return 0
}

// childFail reports a failed stage through the error pipe and exits.
//
//go:nosplit
//go:norace
//go:nocheckptr
func childFail(c *childData, idx int32, err1 syscall.Errno, exit uintptr) {
	sendStage(c, idx, err1)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, exit, 0, 0)
	}
}

// sendStage writes a record to the error pipe: a failed stage and its
// error, or a stage reached (stageReady, stageStarted) with 0.
//
//go:nosplit
//go:norace
//go:nocheckptr
func sendStage(c *childData, idx int32, err1 syscall.Errno) {
	c.errBuf[0] = idx
	c.errBuf[1] = int32(err1)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.errW), uintptr(unsafe.Pointer(&c.errBuf[0])), unsafe.Sizeof(c.errBuf))
}

// runSteps runs the setup steps in order, and returns the index of the
// one that failed and its error, if one did.
//
//go:nosplit
//go:norace
//go:nocheckptr
func runSteps(c *childData) (idx int32, err1 syscall.Errno) {
	var (
		r1 uintptr
		o  *op
	)
	for i := 0; i < len(c.ops); i++ {
		o = &c.ops[i]
		err1 = 0
		switch o.kind {
		case opMount:
			_, _, err1 = syscall.RawSyscall6(syscall.SYS_MOUNT, uintptr(unsafe.Pointer(o.a)), uintptr(unsafe.Pointer(o.b)),
				uintptr(unsafe.Pointer(o.c)), o.flags, uintptr(unsafe.Pointer(o.d)), 0)
		case opMkdir:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_MKDIRAT, atFdcwd, uintptr(unsafe.Pointer(o.a)), uintptr(o.mode))
			if err1 == syscall.EEXIST {
				err1 = 0
			}
		case opEnsureDir:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_MKDIRAT, atFdcwd, uintptr(unsafe.Pointer(o.a)), uintptr(o.mode))
			if err1 == syscall.EEXIST {
				_, _, err1 = syscall.RawSyscall6(unix.SYS_NEWFSTATAT, atFdcwd, uintptr(unsafe.Pointer(o.a)),
					uintptr(unsafe.Pointer(&c.stat)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
				if err1 == 0 && c.stat.Mode&unix.S_IFMT != unix.S_IFDIR {
					err1 = syscall.ENOTDIR
				}
			}
		case opTouch:
			r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(o.a)),
				unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, uintptr(o.mode), 0, 0)
			if err1 == 0 {
				syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
			}
		case opSymlink:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_SYMLINKAT, uintptr(unsafe.Pointer(o.a)), atFdcwd, uintptr(unsafe.Pointer(o.b)))
		case opChdir:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(o.a)), 0, 0)
		case opPivotRoot:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_PIVOT_ROOT, uintptr(unsafe.Pointer(o.a)), uintptr(unsafe.Pointer(o.b)), 0)
		case opUmount:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_UMOUNT2, uintptr(unsafe.Pointer(o.a)), o.flags, 0)
		case opRmdir:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_UNLINKAT, atFdcwd, uintptr(unsafe.Pointer(o.a)), unix.AT_REMOVEDIR)
		case opChmod:
			_, _, err1 = syscall.RawSyscall6(syscall.SYS_FCHMODAT, atFdcwd, uintptr(unsafe.Pointer(o.a)), uintptr(o.mode), 0, 0, 0)
		case opSethostname:
			_, _, err1 = syscall.RawSyscall(syscall.SYS_SETHOSTNAME, uintptr(unsafe.Pointer(o.a)), o.flags, 0)
		case opLoopbackUp:
			r1, _, err1 = syscall.RawSyscall(syscall.SYS_SOCKET, syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
			if err1 == 0 {
				_, _, err1 = syscall.RawSyscall(syscall.SYS_IOCTL, r1, unix.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&c.ifreq[0])))
				syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
			}
		case opCheckCwd:
			err1 = checkCwd(c)
		case opOpenTree, opOpenFile:
			// A descriptor, moved to its slot (the descriptor flags).
			if o.kind == opOpenTree {
				r1, _, err1 = syscall.RawSyscall6(unix.SYS_OPEN_TREE, atFdcwd, uintptr(unsafe.Pointer(o.a)),
					unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE, 0, 0, 0)
			} else {
				r1, _, err1 = syscall.RawSyscall6(syscall.SYS_OPENAT, atFdcwd, uintptr(unsafe.Pointer(o.a)), uintptr(o.mode), 0, 0, 0)
			}
			if err1 == 0 && r1 != o.flags {
				_, _, err1 = syscall.RawSyscall(syscall.SYS_DUP3, r1, o.flags, unix.O_CLOEXEC)
				syscall.RawSyscall(syscall.SYS_CLOSE, r1, 0, 0)
			}
		case opWaitParent:
			waitGoAhead(c)
			syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.goR), 0, 0)
		case opMoveMount:
			_, _, err1 = syscall.RawSyscall6(unix.SYS_MOVE_MOUNT, o.flags, uintptr(unsafe.Pointer(c.emptyPath)),
				atFdcwd, uintptr(unsafe.Pointer(o.b)), unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_SYMLINKS, 0)
		case opClose:
			syscall.RawSyscall(syscall.SYS_CLOSE, o.flags, 0, 0)
		default:
			err1 = syscall.EINVAL
		}
		if err1 != 0 {
			return int32(i), err1
		}
	}

	return 0, 0
}

// atFdcwd is AT_FDCWD (-100) as a system call argument.
const atFdcwd = ^uintptr(99)
