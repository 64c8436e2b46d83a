package seccomp

import (
	"golang.org/x/sys/unix"
)

// allowed are the system calls DefaultPolicy allows unconditionally: the
// unprivileged part of Docker's default profile, less what a sandbox does
// not need (see denied). Names an architecture lacks (open on arm64) are
// left out of its policy.
var allowed = []string{
	// Process lifetime, identity and limits. Signals to other processes
	// stay inside the sandbox's PID namespace.
	"execve", "execveat", "exit", "exit_group", "fork", "vfork",
	"wait4", "waitid", "kill", "tkill", "tgkill",
	"pidfd_open", "pidfd_send_signal", "process_mrelease",
	"getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid",
	"set_tid_address", "restart_syscall", "uname", "sysinfo", "times", "getrusage",
	"getrlimit", "setrlimit", "prlimit64", "umask", "getcpu",
	"getpriority", "setpriority", "ioprio_get", "ioprio_set",
	"sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
	"sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
	"sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
	// Per-process and per-thread settings. prctl's dangerous options need
	// capabilities the sandbox drops; seccomp and landlock only restrict.
	"prctl", "arch_prctl", "set_thread_area", "get_thread_area", "rseq", "rseq_slice_yield",
	"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"uretprobe", "uprobe", // entered only from the kernel's uprobe trampolines

	// User and group IDs: changing them needs CAP_SETUID/CAP_SETGID.
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
	"setfsuid", "setfsgid", "setgroups", "capget", "capset",

	// Memory.
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
	"mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages",
	"membarrier", "memfd_create", "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect",
	"map_shadow_stack", "mseal",

	// Threads and futexes.
	"futex", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
	"set_robust_list", "get_robust_list",

	// Signals.
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
	"signalfd", "signalfd4", "pause", "alarm",

	// Clocks and timers, reading only: no settimeofday, clock_settime,
	// adjtimex or clock_adjtime.
	"time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
	"getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun",
	"timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime",
	"getrandom",

	// File descriptors: open, read, write, close. ioctl is allowed below
	// with conditions.
	"open", "openat", "openat2", "creat", "close", "close_range",
	"read", "write", "readv", "writev", "pread64", "pwrite64",
	"preadv", "pwritev", "preadv2", "pwritev2", "lseek", "dup", "dup2", "dup3",
	"fcntl", "flock", "fsync", "fdatasync", "sync", "syncfs", "sync_file_range",
	"fallocate", "ftruncate", "truncate", "fadvise64", "readahead", "cachestat",
	"sendfile", "splice", "tee", "vmsplice", "copy_file_range",

	// File metadata, directories and links.
	"stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
	"access", "faccessat", "faccessat2", "chmod", "fchmod", "fchmodat", "fchmodat2",
	"chown", "fchown", "lchown", "fchownat", "utime", "utimes", "utimensat", "futimesat",
	"getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir",
	"rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
	"symlink", "symlinkat", "readlink", "readlinkat", "mknod", "mknodat",
	"getdents", "getdents64", "statmount", "listmount",
	"file_getattr", "file_setattr", // what ioctl(FS_IOC_FSGETXATTR) and its setter do

	// Extended attributes.
	"getxattr", "lgetxattr", "fgetxattr", "getxattrat",
	"setxattr", "lsetxattr", "fsetxattr", "setxattrat",
	"listxattr", "llistxattr", "flistxattr", "listxattrat",
	"removexattr", "lremovexattr", "fremovexattr", "removexattrat",

	// Waiting for events.
	"select", "pselect6", "poll", "ppoll",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"fanotify_mark", // useless without fanotify_init, which is denied

	// Pipes and sockets; socket itself is allowed below with conditions.
	// The network namespace confines what they reach.
	"pipe", "pipe2", "socketpair", "bind", "listen", "accept", "accept4", "connect",
	"getsockname", "getpeername", "getsockopt", "setsockopt",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",

	// Asynchronous I/O, the old kind (io_uring is denied).
	"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",

	// System V and POSIX IPC, confined by the IPC namespace.
	"msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
	"shmget", "shmat", "shmdt", "shmctl",
	"mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
}

// denied are system calls DefaultPolicy denies with EPERM by name. The
// default action denies them anyway; naming them keeps them denied when a
// caller relaxes DefaultAction, and documents why.
var denied = []string{
	// Mounts and the root directory: the sandbox's mounts are made before
	// the filter is installed. chroot is denied too: it needs
	// CAP_SYS_CHROOT, and is a classic step in escapes.
	"mount", "umount2", "pivot_root", "chroot",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr",
	"mount_setattr",
	// New namespaces: unprivileged user namespaces are a large attack
	// surface. clone is allowed below without CLONE_NEW* flags.
	"unshare", "setns",
	// Kernel keyrings are not namespaced.
	"keyctl", "add_key", "request_key",
	// Kernel attack surface with a history of escapes.
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	// Inspecting or controlling other processes. ptrace is denied
	// outright (debuggers and strace do not work in the sandbox): it
	// defeats seccomp on older kernels and exposes other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd",
	// File handles bypass path-based checks (the "shocker" escape).
	"open_by_handle_at", "name_to_handle_at",
	// The machine: kernel code, power, swap, accounting, logs, clocks.
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"create_module", "get_kernel_syms", "query_module",
	"reboot", "swapon", "swapoff", "acct", "syslog", "vhangup",
	"settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
	"sethostname", "setdomainname", "quotactl", "quotactl_fd", "lookup_dcookie", "nfsservctl",
	"fanotify_init", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
	// NUMA placement: a sandbox has no business pinning host memory.
	"mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages",
	// Hardware and obsolete interfaces.
	"iopl", "ioperm", "modify_ldt", "uselib", "ustat", "sysfs", "_sysctl",
}

// nsFlags are the clone flags that create namespaces. CLONE_NEWTIME
// (0x80) is left out: clone reads those bits as the exit signal, and only
// clone3 and unshare take CLONE_NEWTIME.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// lower32 compares the lower half of an argument, for arguments of a
// 32-bit C type whose upper half the kernel ignores: a check of all 64
// bits could be dodged by setting the upper half.
func lower32(index int, value uint32) ArgCond {
	return ArgCond{Index: index, Op: MaskedEqual, Value: uint64(value), Mask: 0xffffffff}
}

// conditional are the rules with argument conditions; each system call's
// rules end with an unconditional one.
func conditional() []Rule {
	eperm := Errno(unix.EPERM)
	rules := []Rule{
		// clone without namespace flags (fork, vfork, threads). The flags
		// are arg0 on x86-64 and arm64.
		{Syscall: "clone", Action: Allow, Args: []ArgCond{{Index: 0, Op: MaskedEqual, Mask: nsFlags, Value: 0}}},
		{Syscall: "clone", Action: eperm},
		// clone3's flags are in memory, out of the filter's reach: ENOSYS
		// makes glibc fall back to clone.
		{Syscall: "clone3", Action: Errno(unix.ENOSYS)},
		// Sockets of any family but vsock (reaches the hypervisor) and
		// AF_ALG (kernel crypto, a source of kernel bugs).
		{Syscall: "socket", Action: eperm, Args: []ArgCond{lower32(0, unix.AF_VSOCK)}},
		{Syscall: "socket", Action: eperm, Args: []ArgCond{lower32(0, unix.AF_ALG)}},
		{Syscall: "socket", Action: Allow},
		// ioctl, but not TIOCSTI (pushes input into a terminal the sandbox
		// shares with its caller) or TIOCLINUX (the same on a console).
		{Syscall: "ioctl", Action: eperm, Args: []ArgCond{lower32(1, unix.TIOCSTI)}},
		{Syscall: "ioctl", Action: eperm, Args: []ArgCond{lower32(1, unix.TIOCLINUX)}},
		{Syscall: "ioctl", Action: Allow},
	}
	// personality with the values Docker allows: query (0xffffffff),
	// PER_LINUX, PER_LINUX32 and those with UNAME26; not
	// ADDR_NO_RANDOMIZE or READ_IMPLIES_EXEC, which weaken ASLR and NX.
	for _, persona := range []uint32{0x0, 0x0008, 0x20000, 0x20008, 0xffffffff} {
		rules = append(rules, Rule{Syscall: "personality", Action: Allow, Args: []ArgCond{lower32(0, persona)}})
	}
	return append(rules, Rule{Syscall: "personality", Action: eperm})
}

// DefaultPolicy returns hutch's hardened default policy, a fresh copy the
// caller may edit. Unlisted system calls fail with EPERM.
func DefaultPolicy() *Policy {
	p := &Policy{DefaultAction: Errno(unix.EPERM)}
	for _, name := range allowed {
		if _, ok := syscallNumbers()[name]; ok {
			p.Rules = append(p.Rules, Rule{Syscall: name, Action: Allow})
		}
	}
	for _, name := range denied {
		if _, ok := syscallNumbers()[name]; ok {
			p.Rules = append(p.Rules, Rule{Syscall: name, Action: Errno(unix.EPERM)})
		}
	}
	for _, r := range conditional() {
		if _, ok := syscallNumbers()[r.Syscall]; ok {
			p.Rules = append(p.Rules, r)
		}
	}
	return p
}
