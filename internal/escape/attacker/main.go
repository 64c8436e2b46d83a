//go:build linux

// The runtime must not keep cgroup files open for GOMAXPROCS: they would
// pass for leaked descriptors.
//
//go:debug containermaxprocs=0

// Command attacker tries one sandbox escape and reports whether it worked.
//
//	attacker NAME [ARG...]
//
// It prints one line, "RESULT <verdict> <detail>" (see package escape),
// and exits 0 whatever the verdict; being killed (by SIGSYS from a seccomp
// filter) is the other way an attack ends. Each attack tries the dangerous
// thing for real, but never one that could harm the machine if it
// worked: global kernel knobs are only opened for writing, never written;
// devices are only read; no packet is sent (a connect with no route fails
// before any is); nothing reboots. The escape test suite,
// sandbox/escape_linux_test.go, copies this program, built static
// (CGO_ENABLED=0), into a sandbox image and runs it by name.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/internal/escape"
)

// An attack runs with its arguments and returns its verdict and detail.
type attack func(args []string) (escape.Verdict, string)

var attacks = map[string]attack{
	"host-file":       hostFile,
	"host-shadow":     hostShadow,
	"host-procs":      hostProcs,
	"mount-tmpfs":     mountFS("tmpfs", "tmpfs", "size=64k"),
	"mount-proc":      mountFS("proc", "proc", ""),
	"mount-sysfs":     mountFS("sysfs", "sysfs", ""),
	"mount-cgroup":    mountCgroup,
	"unshare":         unshareNS,
	"setns":           setnsInit,
	"chroot":          chrootEscape,
	"sysrq":           sysrq,
	"sysctl-global":   sysctlGlobal,
	"sysctl-hostname": sysctlHostname,
	"sethostname":     setHostname,
	"kcore":           kcore,
	"kmsg":            kmsg,
	"mknod-block":     mknodBlock,
	"dev-disk":        devDisk,
	"kernel-module":   kernelModule,
	"keyctl":          keyctl,
	"io-uring":        ioUring,
	"int80-keyctl":    int80Keyctl,
	"int80-mount":     int80Mount,
	"ptrace-init":     ptraceInit,
	"init-mem":        initMem,
	"init-fd":         initFD,
	"leaked-fd":       leakedFD,
	"suid-exec":       suidExec,
	"suid-probe":      suidProbe,
	"suid-plant":      suidPlant,
	"bind-probe":      bindProbe,
	"tiocsti":         tiocsti,
	"net-ifaces":      netIfaces,
	"net-connect":     netConnect,
	"vsock":           socketOf(unix.AF_VSOCK, unix.SOCK_STREAM, 0, "AF_VSOCK"),
	"af-alg":          socketOf(unix.AF_ALG, unix.SOCK_SEQPACKET, 0, "AF_ALG"),
	"netlink-audit":   netlinkAudit,
	"bpf":             bpfProgLoad,
	"perf":            perfSystemWide,
	"userfaultfd":     userfaultfd,
	"open-by-handle":  openByHandle,
	"rlimit":          raiseRlimits,
	"caps":            capsZero,
	"no-new-privs":    noNewPrivs,
	"seccomp":         seccompMode,
}

func main() {
	if len(os.Args) < 2 {
		names := make([]string, 0, len(attacks))
		for n := range attacks {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: attacker NAME [ARG...]\nattacks: %s\n", strings.Join(names, " "))
		os.Exit(2)
	}
	name := os.Args[1]
	a, ok := attacks[name]
	if !ok {
		fmt.Print(escape.Format(escape.Error, "unknown attack "+strconv.Quote(name)))
		return
	}
	v, detail := a(os.Args[2:])
	fmt.Print(escape.Format(v, detail))
}

// --- helpers ---

// en names an error by its errno when it has one ("ENOENT").
func en(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
	}
	return err.Error()
}

// findings collects what each try did; any escape makes the verdict.
type findings struct {
	escaped []string
	other   []string
}

func (f *findings) escape(format string, args ...any) {
	f.escaped = append(f.escaped, fmt.Sprintf(format, args...))
}

func (f *findings) note(format string, args ...any) {
	f.other = append(f.other, fmt.Sprintf(format, args...))
}

func (f *findings) verdict() (escape.Verdict, string) {
	if len(f.escaped) > 0 {
		return escape.Escaped, strings.Join(f.escaped, "; ")
	}
	return escape.Blocked, strings.Join(f.other, "; ")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// onLockedThread runs f on a thread of its own that dies afterwards, for
// attacks that change per-thread state (unshare, setns, chroot).
func onLockedThread(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with the goroutine.
		defer close(done)
		f()
	}()
	<-done
}

// tryHostFile reads path through every route that could lead out of the
// sandbox and records an escape when the content hashes to want.
func tryHostFile(f *findings, path, want string) {
	for _, p := range []string{path, "/proc/1/root" + path, "/proc/self/root" + path, "/proc/1/cwd" + path} {
		b, err := os.ReadFile(p)
		switch {
		case err != nil:
			f.note("%s: %s", p, en(err))
		case sha256Hex(b) == want:
			f.escape("read the host's file through %s", p)
		default:
			f.note("%s: a different file", p)
		}
	}
}

func statusField(name string) (string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/self/status", name)
}

// --- host files and processes ---

// hostFile PATH SHA256: read a file the test planted on the host.
func hostFile(args []string) (escape.Verdict, string) {
	if len(args) != 2 {
		return escape.Error, "usage: host-file PATH SHA256"
	}
	var f findings
	tryHostFile(&f, args[0], args[1])
	return f.verdict()
}

// hostShadow SHA256|unknown: read the host's /etc/shadow (the image has
// none).
func hostShadow(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: host-shadow SHA256|unknown"
	}
	var f findings
	for _, p := range []string{"/etc/shadow", "/proc/1/root/etc/shadow"} {
		b, err := os.ReadFile(p)
		switch {
		case err != nil:
			f.note("%s: %s", p, en(err))
		case args[0] == "unknown":
			return escape.Error, fmt.Sprintf("read %d bytes of %s, and the host's hash is unknown", len(b), p)
		case sha256Hex(b) == args[0]:
			f.escape("read the host's /etc/shadow through %s", p)
		default:
			f.note("%s: a different file", p)
		}
	}
	return f.verdict()
}

// hostProcs PID: see or signal a host process (the test's own pid), or
// any process but init and this one. Only signal 0 is ever sent.
func hostProcs(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: host-procs PID"
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		return escape.Error, err.Error()
	}
	var f findings
	switch err := unix.Kill(pid, 0); {
	case err == nil || errors.Is(err, unix.EPERM):
		f.escape("kill(%d, 0): %v: the host's pid is visible", pid, err)
	default:
		f.note("kill(%d, 0): %s", pid, en(err))
	}
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		unix.Close(fd)
		f.escape("pidfd_open(%d) worked", pid)
	} else {
		f.note("pidfd_open(%d): %s", pid, en(err))
	}
	if err := unix.Kill(-1, 0); err == nil {
		f.escape("kill(-1, 0) reached some process")
	} else {
		f.note("kill(-1, 0): %s", en(err))
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		f.note("/proc: %s", en(err))
	}
	self := os.Getpid()
	var pids []string
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pids = append(pids, e.Name())
		if n != 1 && n != self {
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			f.escape("/proc shows pid %d (%q)", n, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
	f.note("pids in /proc: %s", strings.Join(pids, ","))
	return f.verdict()
}

// --- mounts and namespaces ---

func mountFS(source, fstype, data string) attack {
	return func([]string) (escape.Verdict, string) {
		dir := "/tmp/mnt-" + fstype
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return escape.Error, en(err)
		}
		if err := unix.Mount(source, dir, fstype, 0, data); err != nil {
			return escape.Blocked, fmt.Sprintf("mount %s: %s", fstype, en(err))
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		return escape.Escaped, "mounted " + fstype + " on " + dir
	}
}

// mountCgroup mounts a cgroup v1 hierarchy, the first step of the
// release_agent escape. The release_agent file is only looked at.
func mountCgroup([]string) (escape.Verdict, string) {
	dir := "/tmp/mnt-cgroup"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return escape.Error, en(err)
	}
	var f findings
	// Only controllers the host already has: a mount of one joins the
	// existing hierarchy instead of creating a new one.
	for _, ctl := range []string{"memory", "pids", "cpu"} {
		if err := unix.Mount("cgroup", dir, "cgroup", 0, ctl); err != nil {
			f.note("mount cgroup -o %s: %s", ctl, en(err))
			continue
		}
		_, err := os.Stat(dir + "/release_agent")
		unix.Unmount(dir, unix.MNT_DETACH)
		ra := "release_agent present"
		if err != nil {
			ra = "release_agent: " + en(err)
		}
		f.escape("mounted cgroup v1 %s (%s)", ctl, ra)
		break
	}
	return f.verdict()
}

// unshareNS creates new namespaces: a mount namespace with unshare, and a
// user namespace (which a multi-threaded process cannot unshare) with a
// child cloned into one.
func unshareNS([]string) (escape.Verdict, string) {
	var f findings
	onLockedThread(func() {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			f.note("unshare(CLONE_NEWNS): %s", en(err))
		} else {
			f.escape("unshare(CLONE_NEWNS) worked")
		}
	})
	cmd := exec.Command("/proc/self/exe", "seccomp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		f.note("clone(CLONE_NEWUSER|CLONE_NEWNS): %s", en(err))
	} else {
		f.escape("clone(CLONE_NEWUSER|CLONE_NEWNS) worked")
	}
	return f.verdict()
}

// setnsInit PATH SHA256: join init's namespaces through /proc/1/ns and
// look for the host's file from there.
func setnsInit(args []string) (escape.Verdict, string) {
	if len(args) != 2 {
		return escape.Error, "usage: setns PATH SHA256"
	}
	var f findings
	onLockedThread(func() {
		// A mount namespace can only be joined by a thread with an
		// fs_struct of its own.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			f.note("unshare(CLONE_FS): %s", en(err))
		}
		var joined []string
		for _, ns := range []string{"user", "mnt", "pid", "net", "uts", "ipc", "cgroup"} {
			fd, err := unix.Open("/proc/1/ns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				f.note("open /proc/1/ns/%s: %s", ns, en(err))
				continue
			}
			err = unix.Setns(fd, 0)
			unix.Close(fd)
			if err != nil {
				f.note("setns %s: %s", ns, en(err))
				continue
			}
			joined = append(joined, ns)
		}
		f.note("joined %v", joined)
		tryHostFile(&f, args[0], args[1])
	})
	return f.verdict()
}

// chrootEscape PATH SHA256: the classic chroot escapes (chroot into a
// subdirectory without entering it, or with a descriptor kept outside,
// then climb with "..") and look for the host's file from there.
func chrootEscape(args []string) (escape.Verdict, string) {
	if len(args) != 2 {
		return escape.Error, "usage: chroot PATH SHA256"
	}
	var f findings
	for _, viaFD := range []bool{false, true} {
		onLockedThread(func() {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				f.note("unshare(CLONE_FS): %s", en(err))
				return
			}
			dir, err := os.MkdirTemp("/tmp", "chroot")
			if err != nil {
				f.note("mkdir: %s", en(err))
				return
			}
			outside, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				f.note("open /: %s", en(err))
				return
			}
			defer unix.Close(outside)
			if err := unix.Chroot(dir); err != nil {
				f.note("chroot: %s", en(err))
				return
			}
			if viaFD {
				unix.Fchdir(outside)
			}
			for range 64 {
				unix.Chdir("..")
			}
			if err := unix.Chroot("."); err != nil {
				f.note("chroot .: %s", en(err))
				return
			}
			ents, _ := os.ReadDir("/")
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			f.note("fd=%v: / holds %s", viaFD, strings.Join(names, ","))
			tryHostFile(&f, args[0], args[1])
		})
	}
	return f.verdict()
}

// --- /proc, /sys and kernel knobs ---

// sysrq opens /proc/sysrq-trigger for writing. It never writes: an open
// that works is the escape.
func sysrq([]string) (escape.Verdict, string) {
	return openForWrite("/proc/sysrq-trigger")
}

func openForWrite(paths ...string) (escape.Verdict, string) {
	var f findings
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			f.note("%s: %s", p, en(err))
			continue
		}
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		unix.Close(fd)
		if st.Mode&unix.S_IFMT == unix.S_IFCHR {
			// Masked with a bind of /dev/null.
			f.note("%s: masked (a character device)", p)
			continue
		}
		f.escape("opened %s for writing (nothing written)", p)
	}
	return f.verdict()
}

// sysctlGlobal opens global kernel knobs for writing; it never writes.
func sysctlGlobal([]string) (escape.Verdict, string) {
	return openForWrite(
		"/proc/sys/kernel/core_pattern",
		"/proc/sys/kernel/modprobe",
		"/proc/sys/kernel/hotplug",
		"/proc/sys/vm/drop_caches",
		"/proc/sys/kernel/panic",
	)
}

// sysctlHostname writes the UTS namespace's names through /proc/sys. That
// may work; the test checks that the host's names did not change.
func sysctlHostname([]string) (escape.Verdict, string) {
	var notes []string
	for _, p := range []string{"/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"} {
		if err := os.WriteFile(p, []byte("hutch-escape"), 0); err != nil {
			notes = append(notes, p+": "+en(err))
		} else {
			notes = append(notes, p+": written")
		}
	}
	return escape.Done, strings.Join(notes, "; ")
}

func setHostname([]string) (escape.Verdict, string) {
	var notes []string
	if err := unix.Sethostname([]byte("hutch-escape")); err != nil {
		notes = append(notes, "sethostname: "+en(err))
	} else {
		notes = append(notes, "sethostname: done")
	}
	if err := unix.Setdomainname([]byte("hutch-escape")); err != nil {
		notes = append(notes, "setdomainname: "+en(err))
	} else {
		notes = append(notes, "setdomainname: done")
	}
	return escape.Done, strings.Join(notes, "; ")
}

func readSome(path string, n int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Read(fd, make([]byte, n))
	return err
}

func kcore([]string) (escape.Verdict, string) {
	fd, err := unix.Open("/proc/kcore", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return escape.Blocked, "/proc/kcore: " + en(err)
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, make([]byte, 64))
	switch {
	case err != nil:
		return escape.Blocked, "/proc/kcore: read: " + en(err)
	case n == 0:
		// Masked with a bind of /dev/null: nothing to read.
		return escape.Blocked, "/proc/kcore: masked (reads nothing)"
	}
	return escape.Escaped, fmt.Sprintf("read %d bytes of /proc/kcore", n)
}

// mknodDirs are where a device node is tried: every writable place.
var mknodDirs = []string{"/dev", "/dev/shm", "/tmp", "/"}

// openDevice makes a device node in each writable place and opens it
// read-only; read, when set, reads a block from it.
func openDevice(f *findings, mode uint32, major, minor uint32, read bool) {
	for _, d := range mknodDirs {
		p := filepath.Join(d, fmt.Sprintf(".hutch-dev-%d-%d", major, minor))
		if err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(major, minor))); err != nil {
			f.note("mknod %s: %s", p, en(err))
			continue
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		os.Remove(p)
		if err != nil {
			f.note("open %s: %s", p, en(err))
			continue
		}
		if !read {
			f.escape("made and opened %d:%d at %s", major, minor, p)
			unix.Close(fd)
			continue
		}
		n, err := unix.Read(fd, make([]byte, 512))
		unix.Close(fd)
		if err != nil {
			f.note("read %s: %s", p, en(err))
			continue
		}
		f.escape("read %d bytes of block device %d:%d through %s", n, major, minor, p)
	}
}

// kmsg opens the kernel log, through /dev/kmsg or a node made for it.
func kmsg([]string) (escape.Verdict, string) {
	var f findings
	if err := readSome("/dev/kmsg", 256); err == nil || errors.Is(err, unix.EAGAIN) {
		f.escape("opened /dev/kmsg")
	} else {
		f.note("/dev/kmsg: %s", en(err))
	}
	openDevice(&f, unix.S_IFCHR, 1, 11, false)
	return f.verdict()
}

// mknodBlock MAJ:MIN[,MAJ:MIN...]: make a node for a host disk and read
// its first block (only read).
func mknodBlock(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: mknod-block MAJ:MIN[,...]"
	}
	var f findings
	for _, dev := range strings.Split(args[0], ",") {
		var major, minor uint32
		if _, err := fmt.Sscanf(dev, "%d:%d", &major, &minor); err != nil {
			return escape.Error, "bad device " + dev
		}
		openDevice(&f, unix.S_IFBLK, major, minor, true)
	}
	return f.verdict()
}

// devDisk opens the host's disks and memory devices by their usual names.
func devDisk([]string) (escape.Verdict, string) {
	var f findings
	for _, p := range []string{"/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda", "/dev/mem", "/dev/kmem", "/dev/port"} {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			f.note("%s: %s", p, en(err))
			continue
		}
		unix.Close(fd)
		f.escape("opened %s", p)
	}
	return f.verdict()
}

// --- system calls ---

// kernelModule loads a garbage module. EPERM (or ENOSYS: no module
// support, or a filter) means the call was refused; any other error means
// it reached the module loader, which only a privileged caller does.
func kernelModule([]string) (escape.Verdict, string) {
	var f findings
	judge := func(call string, err error) {
		switch {
		case err == nil:
			f.escape("%s succeeded", call)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOSYS):
			f.note("%s: %s", call, en(err))
		default:
			f.escape("%s reached the loader: %s", call, en(err))
		}
	}
	garbage := bytes.Repeat([]byte("hutch-not-a-module"), 16)
	judge("init_module", unix.InitModule(garbage, ""))
	p := "/tmp/garbage.ko"
	if err := os.WriteFile(p, garbage, 0o644); err != nil {
		return escape.Error, en(err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return escape.Error, en(err)
	}
	defer unix.Close(fd)
	judge("finit_module", unix.FinitModule(fd, "", 0))
	return f.verdict()
}

func keyctl([]string) (escape.Verdict, string) {
	// A NULL name joins a new anonymous session keyring.
	id, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	if errno != 0 {
		return escape.Blocked, "keyctl(KEYCTL_JOIN_SESSION_KEYRING): " + en(errno)
	}
	return escape.Escaped, fmt.Sprintf("joined a new session keyring %d", id)
}

func ioUring([]string) (escape.Verdict, string) {
	var params [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0)
	if errno != 0 {
		return escape.Blocked, "io_uring_setup: " + en(errno)
	}
	unix.Close(int(fd))
	return escape.Escaped, "io_uring_setup gave a ring"
}

// i386 system call numbers, for int 0x80. Each is a different, often
// harmless, call on x86_64 (288 is accept4, 21 is access): a filter that
// checks numbers without the architecture lets them through.
const (
	i386Mount  = 21
	i386Keyctl = 288
)

// int80Keyctl is keyctl through the i386 entry point.
func int80Keyctl([]string) (escape.Verdict, string) {
	if !haveInt80 {
		return escape.Skip, "int 0x80 exists only on amd64"
	}
	r := int32(int80(i386Keyctl, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0))
	if r < 0 {
		return escape.Blocked, "i386 keyctl: " + en(syscall.Errno(-r))
	}
	return escape.Escaped, fmt.Sprintf("i386 keyctl joined a new session keyring %d", r)
}

// int80Mount is mount(2) of a tmpfs through the i386 entry point. Its
// strings must lie below 4 GiB, where a 32-bit pointer reaches.
func int80Mount([]string) (escape.Verdict, string) {
	if !haveInt80 {
		return escape.Skip, "int 0x80 exists only on amd64"
	}
	dir := "/tmp/mnt-int80"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return escape.Error, en(err)
	}
	mem, err := low32Page()
	if err != nil {
		return escape.Error, "mmap below 4 GiB: " + en(err)
	}
	copy(mem, "tmpfs\x00"+dir+"\x00")
	src := uintptr(unsafe.Pointer(&mem[0]))
	tgt := src + uintptr(len("tmpfs\x00"))
	r := int32(int80(i386Mount, src, tgt, src, 0, 0))
	if r < 0 {
		return escape.Blocked, "i386 mount: " + en(syscall.Errno(-r))
	}
	unix.Unmount(dir, unix.MNT_DETACH)
	return escape.Escaped, "i386 mount of a tmpfs worked"
}

// ptraceInit attaches to the sandbox's init, a copy of the host process
// that started the sandbox. PTRACE_SEIZE does not stop it; exiting
// detaches.
func ptraceInit([]string) (escape.Verdict, string) {
	var err error
	onLockedThread(func() { err = unix.PtraceSeize(1) })
	if err != nil {
		return escape.Blocked, "ptrace(PTRACE_SEIZE, 1): " + en(err)
	}
	return escape.Escaped, "ptrace(PTRACE_SEIZE, 1) worked"
}

// initMem reads init's environment and memory: those of the host process
// that started the sandbox.
func initMem([]string) (escape.Verdict, string) {
	var f findings
	if b, err := os.ReadFile("/proc/1/environ"); err != nil {
		f.note("/proc/1/environ: %s", en(err))
	} else {
		f.escape("read %d bytes of /proc/1/environ", len(b))
	}
	maps, err := os.ReadFile("/proc/1/maps")
	if err != nil {
		f.note("/proc/1/maps: %s", en(err))
		return f.verdict()
	}
	mem, err := os.Open("/proc/1/mem")
	if err != nil {
		f.note("/proc/1/mem: %s", en(err))
		return f.verdict()
	}
	defer mem.Close()
	for line := range strings.Lines(string(maps)) {
		fields := strings.Fields(line)
		if len(fields) < 2 || !strings.HasPrefix(fields[1], "r") {
			continue
		}
		lo, _, _ := strings.Cut(fields[0], "-")
		addr, err := strconv.ParseUint(lo, 16, 64)
		if err != nil || addr > 1<<62 {
			continue
		}
		n, err := mem.ReadAt(make([]byte, 64), int64(addr))
		if err != nil {
			f.note("/proc/1/mem at %#x: %s", addr, en(err))
			continue
		}
		f.escape("read %d bytes of init's memory at %#x", n, addr)
		break
	}
	return f.verdict()
}

// initFD opens init's descriptors through /proc/1/fd: init holds the pipe
// it reports the command's end on, to the host. Nothing is read or
// written.
func initFD([]string) (escape.Verdict, string) {
	var f findings
	ents, err := os.ReadDir("/proc/1/fd")
	if err != nil {
		f.note("/proc/1/fd: %s", en(err))
		return f.verdict()
	}
	for _, e := range ents {
		p := "/proc/1/fd/" + e.Name()
		target, _ := os.Readlink(p)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			f.note("%s (%s): %s", p, target, en(err))
			continue
		}
		unix.Close(fd)
		f.escape("opened %s (%s)", p, target)
	}
	if len(ents) == 0 {
		f.note("init has no descriptors")
	}
	return f.verdict()
}

// leakedFD looks for descriptors beyond stdio that came from outside and
// tries each: read it, and for a directory climb out of it.
func leakedFD([]string) (escape.Verdict, string) {
	dirfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return escape.Error, "/proc/self/fd: " + en(err)
	}
	buf := make([]byte, 4096)
	var names []string
	for {
		n, err := unix.ReadDirent(dirfd, buf)
		if err != nil || n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	unix.Close(dirfd)
	var f findings
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd < 3 || fd == dirfd {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + name)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			continue
		}
		what := fmt.Sprintf("fd %d (%s)", fd, target)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if up, err := unix.Openat(fd, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(up)
				what += ", its parent opened"
			}
		} else if _, err := unix.Pread(fd, make([]byte, 16), 0); err == nil {
			what += ", readable"
		}
		f.escape("leaked %s", what)
	}
	if len(f.escaped) == 0 {
		f.note("no descriptor beyond stdio")
	}
	return f.verdict()
}

// suidExec PATH: become an unprivileged user (when root) and execute the
// set-user-ID program at PATH, which reports whether its euid changed.
func suidExec(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: suid-exec PATH"
	}
	if os.Getuid() == 0 {
		const nobody = 65534
		// In a user namespace setgroups may be denied; that is fine.
		syscall.Setgroups(nil)
		for _, set := range []struct {
			name string
			f    func(r, e, s int) error
		}{{"setresgid", syscall.Setresgid}, {"setresuid", syscall.Setresuid}} {
			err := set.f(nobody, nobody, nobody)
			if errors.Is(err, unix.EINVAL) {
				return escape.Skip, set.name + "(65534): EINVAL: the sandbox maps no uid but root, so there is no unprivileged uid to escalate from"
			}
			if err != nil {
				return escape.Error, set.name + ": " + en(err)
			}
		}
	}
	err := syscall.Exec(args[0], []string{args[0], "suid-probe"}, nil)
	return escape.Blocked, "execve " + args[0] + ": " + en(err)
}

// suidProbe runs as the set-user-ID program of suid-exec.
func suidProbe([]string) (escape.Verdict, string) {
	uid, euid := os.Getuid(), os.Geteuid()
	nnp, _ := statusField("NoNewPrivs")
	d := fmt.Sprintf("uid=%d euid=%d NoNewPrivs=%s", uid, euid, nnp)
	if euid != uid {
		return escape.Escaped, "the set-user-ID bit took effect: " + d
	}
	return escape.Blocked, d
}

// suidPlant DIR: leave a set-user-ID root copy of this program in DIR, a
// writable bind; the test looks at it from the host.
func suidPlant(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: suid-plant DIR"
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return escape.Error, en(err)
	}
	p := filepath.Join(args[0], "suid-planted")
	if err := os.WriteFile(p, self, 0o755); err != nil {
		return escape.Blocked, "write " + p + ": " + en(err)
	}
	var notes []string
	if err := os.Chown(p, 0, 0); err != nil {
		notes = append(notes, "chown 0:0: "+en(err))
	}
	if err := os.Chmod(p, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		notes = append(notes, "chmod 06755: "+en(err))
	}
	if fi, err := os.Stat(p); err == nil {
		st := fi.Sys().(*syscall.Stat_t)
		notes = append(notes, fmt.Sprintf("%s is %v uid=%d gid=%d inside", p, fi.Mode(), st.Uid, st.Gid))
	}
	return escape.Done, strings.Join(notes, "; ")
}

// bindProbe TARGET: look at a bind target whose path in the image holds a
// symbolic link, and write into it; the test checks the host side.
func bindProbe(args []string) (escape.Verdict, string) {
	if len(args) != 1 {
		return escape.Error, "usage: bind-probe TARGET"
	}
	ents, err := os.ReadDir(args[0])
	if err != nil {
		return escape.Done, args[0] + ": " + en(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	d := fmt.Sprintf("%s holds [%s]", args[0], strings.Join(names, " "))
	if err := os.WriteFile(filepath.Join(args[0], "written-by-sandbox"), []byte("x"), 0o644); err != nil {
		d += "; write: " + en(err)
	}
	return escape.Done, d
}

// tiocsti pushes a character into the input of the terminal on stdin (the
// test passes one of its own) and of /dev/tty.
func tiocsti([]string) (escape.Verdict, string) {
	var f findings
	try := func(name string, fd int) {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSTI, '#'); err != nil {
			f.note("TIOCSTI on %s: %s", name, en(err))
		} else {
			f.escape("TIOCSTI on %s injected input", name)
		}
	}
	try("stdin", 0)
	if fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err != nil {
		f.note("/dev/tty: %s", en(err))
	} else {
		try("/dev/tty", fd)
		unix.Close(fd)
	}
	return f.verdict()
}

// --- network ---

func interfaces(f *findings) bool {
	ifs, err := net.Interfaces()
	if err != nil {
		f.note("interfaces: %s", en(err))
		return true
	}
	onlyLo := true
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
		if i.Flags&net.FlagLoopback == 0 {
			onlyLo = false
			f.escape("interface %s (%v)", i.Name, i.Flags)
		}
	}
	f.note("interfaces: %s", strings.Join(names, ","))
	return onlyLo
}

func netIfaces([]string) (escape.Verdict, string) {
	var f findings
	interfaces(&f)
	return f.verdict()
}

// netConnect connects to outside addresses. With only lo there is no
// route, and connect fails with ENETUNREACH before anything is sent; it
// is not even tried when an interface other than lo exists.
func netConnect([]string) (escape.Verdict, string) {
	var f findings
	if !interfaces(&f) {
		return f.verdict()
	}
	for _, a := range []struct{ network, addr string }{
		{"tcp", "10.0.2.2:80"}, {"tcp", "1.1.1.1:53"}, {"udp", "8.8.8.8:53"}, {"tcp6", "[2606:4700:4700::1111]:53"},
	} {
		c, err := net.DialTimeout(a.network, a.addr, time.Second)
		var errno syscall.Errno
		switch {
		case err == nil:
			c.Close()
			f.escape("%s %s connected", a.network, a.addr)
		case errors.As(err, &errno) && (errno == unix.ENETUNREACH || errno == unix.EPERM || errno == unix.EACCES):
			f.note("%s %s: %s", a.network, a.addr, en(errno))
		default:
			// A timeout or a refusal means a route existed.
			f.escape("%s %s: %v: a route exists", a.network, a.addr, err)
		}
	}
	return f.verdict()
}

func socketOf(family, typ, proto int, name string) attack {
	return func([]string) (escape.Verdict, string) {
		fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return escape.Blocked, "socket(" + name + "): " + en(err)
		}
		unix.Close(fd)
		return escape.Escaped, "socket(" + name + ") created"
	}
}

// netlinkAudit asks the kernel's audit subsystem for its status.
func netlinkAudit([]string) (escape.Verdict, string) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return escape.Blocked, "socket(NETLINK_AUDIT): " + en(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	const auditGet = 1000
	req := make([]byte, unix.NLMSG_HDRLEN)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&req[0]))
	*hdr = unix.NlMsghdr{Len: uint32(len(req)), Type: auditGet, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return escape.Blocked, "send AUDIT_GET: " + en(err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return escape.Blocked, "recv: " + en(err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return escape.Error, "parse: " + err.Error()
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case auditGet:
				return escape.Escaped, "the audit subsystem answered AUDIT_GET"
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := *(*int32)(unsafe.Pointer(&m.Data[0])); code != 0 {
						return escape.Blocked, "AUDIT_GET: " + en(syscall.Errno(-code))
					}
				}
			}
		}
	}
}

// bpfProgLoad loads the smallest socket filter, "return 0".
func bpfProgLoad([]string) (escape.Verdict, string) {
	insns := [2]uint64{
		0x00000000000000b7, // BPF_MOV64_IMM(R0, 0)
		0x0000000000000095, // BPF_EXIT
	}
	license := []byte("GPL\x00")
	attr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		logLevel, logSize uint32
		logBuf            uint64
		kernVersion       uint32
		_                 uint32
	}{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return escape.Blocked, "bpf(BPF_PROG_LOAD): " + en(errno)
	}
	unix.Close(int(fd))
	return escape.Escaped, "loaded a BPF program"
}

// perfSystemWide opens a CPU-wide counter, which sees every process.
func perfSystemWide([]string) (escape.Verdict, string) {
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{}))}
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return escape.Blocked, "perf_event_open(pid=-1, cpu=0): " + en(err)
	}
	unix.Close(fd)
	return escape.Escaped, "opened a CPU-wide perf event"
}

// userfaultfd asks for a userfaultfd that also handles kernel-mode
// faults, a staple of kernel exploits.
func userfaultfd([]string) (escape.Verdict, string) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		return escape.Blocked, "userfaultfd: " + en(errno)
	}
	unix.Close(int(fd))
	return escape.Escaped, "got a userfaultfd for kernel-mode faults"
}

// openByHandle MOUNTDIR TYPE:HEX SHA256: the "shocker" escape. A handle
// names a file by inode on its file system, not by path: opened relative
// to any directory of that file system visible in the sandbox, it reaches
// files outside the sandbox. The test computes the handle of its planted
// file on the host, as an attacker would guess it.
func openByHandle(args []string) (escape.Verdict, string) {
	if len(args) != 3 {
		return escape.Error, "usage: open-by-handle MOUNTDIR TYPE:HEX SHA256"
	}
	typ, hx, ok := strings.Cut(args[1], ":")
	t, err := strconv.ParseInt(typ, 10, 32)
	if !ok || err != nil {
		return escape.Error, "bad handle " + args[1]
	}
	b, err := hex.DecodeString(hx)
	if err != nil {
		return escape.Error, "bad handle " + args[1]
	}
	mfd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return escape.Error, args[0] + ": " + en(err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(t), b), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return escape.Blocked, "open_by_handle_at: " + en(err)
	}
	f := os.NewFile(uintptr(fd), "handle")
	defer f.Close()
	content, err := io.ReadAll(f)
	if err != nil {
		return escape.Escaped, "open_by_handle_at opened the host's file; read: " + en(err)
	}
	if sha256Hex(content) == args[2] {
		return escape.Escaped, "read the host's file through open_by_handle_at"
	}
	return escape.Escaped, "open_by_handle_at opened a file outside the sandbox's paths"
}

// --- privileges ---

// raiseRlimits raises hard limits by one, which needs CAP_SYS_RESOURCE.
func raiseRlimits([]string) (escape.Verdict, string) {
	var f findings
	for _, r := range []struct {
		res  int
		name string
	}{
		{unix.RLIMIT_NOFILE, "NOFILE"}, {unix.RLIMIT_NPROC, "NPROC"}, {unix.RLIMIT_MEMLOCK, "MEMLOCK"},
		{unix.RLIMIT_AS, "AS"}, {unix.RLIMIT_CPU, "CPU"}, {unix.RLIMIT_FSIZE, "FSIZE"}, {unix.RLIMIT_CORE, "CORE"},
		{unix.RLIMIT_STACK, "STACK"}, {unix.RLIMIT_MSGQUEUE, "MSGQUEUE"}, {unix.RLIMIT_SIGPENDING, "SIGPENDING"},
	} {
		var lim unix.Rlimit
		if err := unix.Prlimit(0, r.res, nil, &lim); err != nil {
			f.note("%s: %s", r.name, en(err))
			continue
		}
		if lim.Max == unix.RLIM_INFINITY {
			f.note("%s: hard limit infinite", r.name)
			continue
		}
		raised := lim
		raised.Max++
		if err := unix.Prlimit(0, r.res, &raised, nil); err != nil {
			f.note("%s: %s", r.name, en(err))
			continue
		}
		f.escape("raised %s's hard limit above %d", r.name, lim.Max)
	}
	return f.verdict()
}

// capsZero reports the command's capabilities: it must have none.
func capsZero([]string) (escape.Verdict, string) {
	var d []string
	v := escape.Blocked
	for _, name := range []string{"CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"} {
		val, err := statusField(name)
		if err != nil {
			return escape.Error, en(err)
		}
		d = append(d, name+"="+val)
		if name == "CapEff" {
			if n, err := strconv.ParseUint(val, 16, 64); err != nil || n != 0 {
				v = escape.Escaped
			}
		}
	}
	return v, strings.Join(d, " ")
}

func statusIs(field, want string) (escape.Verdict, string) {
	val, err := statusField(field)
	if err != nil {
		return escape.Error, en(err)
	}
	if val != want {
		return escape.Escaped, field + "=" + val
	}
	return escape.Blocked, field + "=" + val
}

// noNewPrivs reports whether no_new_privs is set.
func noNewPrivs([]string) (escape.Verdict, string) { return statusIs("NoNewPrivs", "1") }

// seccompMode reports whether a seccomp filter is on (mode 2).
func seccompMode([]string) (escape.Verdict, string) { return statusIs("Seccomp", "2") }
