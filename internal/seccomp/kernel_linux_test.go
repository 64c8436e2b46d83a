package seccomp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The kernel tests install the filter in a child: the test binary run
// again with childEnv set, which TestMain hands to the child's code
// instead of the tests. Installing it in the test process would confine
// the test runner for good.
const (
	childEnv    = "HUTCH_SECCOMP_TEST_CHILD"
	childDirEnv = "HUTCH_SECCOMP_TEST_DIR"
	// exitNoSeccomp is the child's exit status when the kernel refuses
	// the filter, so that the parent can skip rather than fail.
	exitNoSeccomp = 3
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
		os.Exit(m.Run())
	case "probe":
		installOrExit()
		probeChild()
	case "exec":
		installOrExit()
		execChild()
	case "x32":
		installOrExit()
		// Only a kill ends this: getpid through the x32 ABI.
		unix.RawSyscall(x32Bit|unix.SYS_GETPID, 0, 0, 0)
		fmt.Println("x32 getpid returned")
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, mode)
	}
	os.Exit(1)
}

func installOrExit() {
	prog, err := DefaultPolicy().Program()
	if err == nil {
		err = Install(prog)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "installing the filter:", err)
		os.Exit(exitNoSeccomp)
	}
}

// execChild runs the command in its arguments under the filter.
func execChild() {
	path, err := exec.LookPath(os.Args[1])
	if err == nil {
		err = syscall.Exec(path, os.Args[1:], os.Environ())
	}
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(1)
}

// childCmd returns a command that runs the test binary as a child in mode.
func childCmd(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+t.TempDir())
	return cmd
}

// runChild runs cmd and returns its output, skipping the test when the
// kernel refuses the filter.
func runChild(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == exitNoSeccomp {
		t.Skipf("this machine cannot install a seccomp filter: %s", out.String())
	}
	return out.String(), err
}

// probe is a system call, or a piece of ordinary work, tried under the
// filter. It returns the errno it failed with, or nil.
type probe struct {
	name string
	fn   func(dir string) error
}

// rawErr turns the result of a raw system call into an error.
func rawErr(_, _ uintptr, errno syscall.Errno) error {
	if errno != 0 {
		return errno
	}
	return nil
}

// A pid no process has: unfiltered calls on it fail with ESRCH, so EPERM
// can only come from the filter.
const noPid = 0x3ffffff0

var probes = []probe{
	// Unfiltered, these would fail differently (ENOENT, EBADF, ESRCH,
	// EINVAL) or succeed; the filter must answer first.
	{"unshare(CLONE_NEWUSER)", func(string) error { return unix.Unshare(unix.CLONE_NEWUSER) }},
	{"unshare(CLONE_NEWNS)", func(string) error { return unix.Unshare(unix.CLONE_NEWNS) }},
	{"mount", func(dir string) error { return unix.Mount("none", dir+"/missing", "tmpfs", 0, "") }},
	{"umount2", func(dir string) error { return unix.Unmount(dir+"/missing", 0) }},
	{"pivot_root", func(dir string) error { return unix.PivotRoot(dir+"/missing", dir+"/missing") }},
	{"chroot", func(dir string) error { return unix.Chroot(dir + "/missing") }},
	{"setns", func(string) error { return unix.Setns(-1, 0) }},
	{"clone(CLONE_NEWNS)", func(string) error {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		return cmd.Run()
	}},
	{"clone3", func(string) error { return rawErr(unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)) }},
	{"socket(AF_VSOCK)", func(string) error { return socketErr(unix.AF_VSOCK, unix.SOCK_STREAM) }},
	{"socket(AF_VSOCK|1<<32)", func(string) error { return socketErr(1<<32|unix.AF_VSOCK, unix.SOCK_STREAM) }},
	{"socket(AF_ALG)", func(string) error { return socketErr(unix.AF_ALG, unix.SOCK_SEQPACKET) }},
	{"keyctl", func(string) error {
		return rawErr(unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd), 0))
	}},
	{"add_key", func(string) error { return rawErr(unix.Syscall6(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0, 0)) }},
	{"io_uring_setup", func(string) error {
		var params [120]byte
		return rawErr(unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0))
	}},
	{"bpf", func(string) error { return rawErr(unix.Syscall(unix.SYS_BPF, 0, 0, 0)) }},
	{"perf_event_open", func(string) error { return rawErr(unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0, 0, 0, 0)) }},
	{"userfaultfd", func(string) error { return rawErr(unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)) }},
	{"ptrace", func(string) error {
		return rawErr(unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, noPid, 0, 0, 0, 0))
	}},
	{"process_vm_readv", func(string) error {
		return rawErr(unix.Syscall6(unix.SYS_PROCESS_VM_READV, noPid, 0, 0, 0, 0, 0))
	}},
	{"kcmp", func(string) error { return rawErr(unix.Syscall6(unix.SYS_KCMP, noPid, noPid, 0, 0, 0, 0)) }},
	{"open_by_handle_at", func(string) error { return rawErr(unix.Syscall(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)) }},
	{"init_module", func(string) error { return rawErr(unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)) }},
	{"kexec_load", func(string) error { return rawErr(unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xdead, 0, 0)) }},
	{"adjtimex", func(string) error {
		var tx unix.Timex
		_, err := unix.Adjtimex(&tx)
		return err
	}},
	{"ioctl(TIOCSTI)", func(dir string) error { return ioctlErr(unix.TIOCSTI) }},
	{"ioctl(TIOCSTI|1<<32)", func(dir string) error { return ioctlErr(1<<32 | unix.TIOCSTI) }},
	{"ioctl(TCGETS)", func(dir string) error { return ioctlErr(unix.TCGETS) }},
	{"personality(query)", func(string) error { return rawErr(unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)) }},
	{"personality(ADDR_NO_RANDOMIZE)", func(string) error { return rawErr(unix.Syscall(unix.SYS_PERSONALITY, addrNoRandomize, 0, 0)) }},
	{"syscall 999", func(string) error { return rawErr(unix.Syscall(999, 0, 0, 0)) }},

	// Ordinary work.
	{"file", func(dir string) error {
		name := filepath.Join(dir, "f")
		if err := os.WriteFile(name, []byte("hello"), 0o600); err != nil {
			return err
		}
		b, err := os.ReadFile(name)
		if err == nil && string(b) != "hello" {
			err = fmt.Errorf("read %q", b)
		}
		if err == nil {
			_, err = os.Stat(name)
		}
		if err == nil {
			err = os.Remove(name)
		}
		return err
	}},
	{"exec /bin/true", func(string) error { return exec.Command("/bin/true").Run() }},
	{"exec sh pipe", func(string) error {
		out, err := exec.Command("/bin/sh", "-c", "echo hi | cat").Output()
		if err == nil && string(out) != "hi\n" {
			err = fmt.Errorf("output %q", out)
		}
		return err
	}},
	{"threads", func(string) error {
		// Goroutines locked to their threads while they sleep must run on
		// as many threads, which the runtime starts with clone.
		var (
			mu   sync.Mutex
			tids = make(map[int]bool)
			wg   sync.WaitGroup
		)
		for range 8 {
			wg.Go(func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				mu.Lock()
				tids[unix.Gettid()] = true
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			})
		}
		wg.Wait()
		if len(tids) != 8 {
			return fmt.Errorf("8 locked goroutines ran on %d threads", len(tids))
		}
		return nil
	}},
	{"sleep", func(string) error {
		start := time.Now()
		time.Sleep(10 * time.Millisecond)
		if d := time.Since(start); d < 10*time.Millisecond {
			return fmt.Errorf("slept %v", d)
		}
		return nil
	}},
	{"tcp", func(string) error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				io.Copy(c, c)
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "ping" {
			return fmt.Errorf("echo %q", buf)
		}
		return nil
	}},
	{"getrandom", func(string) error {
		_, err := rand.Read(make([]byte, 16))
		return err
	}},
}

func socketErr(domain uint64, typ int) error {
	fd, _, errno := unix.Syscall(unix.SYS_SOCKET, uintptr(domain), uintptr(typ), 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}

func ioctlErr(cmd uint64) error {
	f, err := os.Open("/dev/null")
	if err != nil {
		return err
	}
	defer f.Close()
	c := byte('x')
	return rawErr(unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(cmd), uintptr(unsafe.Pointer(&c))))
}

// probeChild runs every probe under the filter and prints one line each:
// its name, a tab, and "ok" or the errno's name.
func probeChild() {
	dir := os.Getenv(childDirEnv)
	for _, p := range probes {
		err := p.fn(dir)
		result := "ok"
		var errno syscall.Errno
		switch {
		case errors.As(err, &errno):
			result = unix.ErrnoName(errno)
		case err != nil:
			result = err.Error()
		}
		fmt.Printf("%s\t%s\n", p.name, result)
	}
	os.Exit(0)
}

func TestKernelEnforcesDefaultPolicy(t *testing.T) {
	out, err := runChild(t, childCmd(t, "probe"))
	require.NoError(t, err, out)
	got := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if name, result, ok := strings.Cut(sc.Text(), "\t"); ok {
			got[name] = result
		}
	}
	want := map[string]string{
		"unshare(CLONE_NEWUSER)":         "EPERM",
		"unshare(CLONE_NEWNS)":           "EPERM",
		"mount":                          "EPERM",
		"umount2":                        "EPERM",
		"pivot_root":                     "EPERM",
		"chroot":                         "EPERM",
		"setns":                          "EPERM",
		"clone(CLONE_NEWNS)":             "EPERM",
		"clone3":                         "ENOSYS",
		"socket(AF_VSOCK)":               "EPERM",
		"socket(AF_VSOCK|1<<32)":         "EPERM",
		"socket(AF_ALG)":                 "EPERM",
		"keyctl":                         "EPERM",
		"add_key":                        "EPERM",
		"io_uring_setup":                 "EPERM",
		"bpf":                            "EPERM",
		"perf_event_open":                "EPERM",
		"userfaultfd":                    "EPERM",
		"ptrace":                         "EPERM",
		"process_vm_readv":               "EPERM",
		"kcmp":                           "EPERM",
		"open_by_handle_at":              "EPERM",
		"init_module":                    "EPERM",
		"kexec_load":                     "EPERM",
		"adjtimex":                       "EPERM",
		"ioctl(TIOCSTI)":                 "EPERM",
		"ioctl(TIOCSTI|1<<32)":           "EPERM",
		"ioctl(TCGETS)":                  "ENOTTY", // reached the kernel
		"personality(query)":             "ok",
		"personality(ADDR_NO_RANDOMIZE)": "EPERM",
		"syscall 999":                    "ENOSYS",
		"file":                           "ok",
		"exec /bin/true":                 "ok",
		"exec sh pipe":                   "ok",
		"threads":                        "ok",
		"sleep":                          "ok",
		"tcp":                            "ok",
		"getrandom":                      "ok",
	}
	require.Len(t, want, len(probes))
	assert.Equal(t, want, got, "child output:\n%s", out)
}

func TestKernelKillsX32(t *testing.T) {
	if x32Bit == 0 {
		t.Skipf("%s has no x32 ABI", runtime.GOARCH)
	}
	out, err := runChild(t, childCmd(t, "x32"))
	assertKilledBySIGSYS(t, err, out)
}

func assertKilledBySIGSYS(t *testing.T, err error, out string) {
	t.Helper()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output: %s", out)
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled(), "exit status %v, output: %s", ws, out)
	assert.Equal(t, syscall.SIGSYS, ws.Signal(), "output: %s", out)
}

// runFiltered runs a command under the default filter.
func runFiltered(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := childCmd(t, "exec", args...)
	cmd.Dir = dir
	return runChild(t, cmd)
}

func TestKernelRealPrograms(t *testing.T) {
	dir := t.TempDir()

	t.Run("sh", func(t *testing.T) {
		out, err := runFiltered(t, dir, "/bin/sh", "-c", "ls / >/dev/null; cat /proc/self/status >/dev/null; echo ok")
		require.NoError(t, err, out)
		assert.Equal(t, "ok\n", out)
	})

	t.Run("python3", func(t *testing.T) {
		python := lookPath(t, "python3")
		const script = `
import os, socket, subprocess, threading, tempfile
results = []
def work(i):
    results.append(i * i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert sorted(results) == [0, 1, 4, 9]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
cli.sendall(b"ping"); assert conn.recv(4) == b"ping"
assert subprocess.run(["/bin/sh", "-c", "echo sub"], capture_output=True).stdout == b"sub\n"
with tempfile.NamedTemporaryFile() as f:
    f.write(b"x"); f.flush(); assert os.stat(f.name).st_size == 1
print(1)
`
		out, err := runFiltered(t, dir, python, "-c", script)
		require.NoError(t, err, out)
		assert.Equal(t, "1\n", out)
	})

	t.Run("gcc", func(t *testing.T) {
		gcc := lookPath(t, "gcc")
		out, err := runFiltered(t, dir, gcc, "--version")
		require.NoError(t, err, out)

		// glibc's pthread_create tries clone3 first: ENOSYS must make
		// it fall back to clone.
		src := filepath.Join(dir, "hello.c")
		require.NoError(t, os.WriteFile(src, []byte(`#include <pthread.h>
#include <stdio.h>
static void *run(void *arg) { return arg; }
int main(void) {
	pthread_t th;
	void *res;
	if (pthread_create(&th, NULL, run, "thread") != 0 || pthread_join(th, &res) != 0) return 2;
	printf("hello from a %s\n", (char *)res);
	return 0;
}
`), 0o644))
		out, err = runFiltered(t, dir, gcc, "-O2", "-pthread", "-o", "hello", "hello.c")
		require.NoError(t, err, out)
		out, err = runFiltered(t, dir, "./hello")
		require.NoError(t, err, out)
		assert.Equal(t, "hello from a thread\n", out)
	})

	t.Run("int 0x80", func(t *testing.T) {
		if runtime.GOARCH != "amd64" {
			t.Skip("int 0x80 is an x86 instruction")
		}
		gcc := lookPath(t, "gcc")
		// getpid through the i386 ABI, which arrives as AUDIT_ARCH_I386.
		src := filepath.Join(dir, "int80.c")
		require.NoError(t, os.WriteFile(src, []byte(`int main(void) {
	long ret;
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
	return ret > 0 ? 0 : 1;
}
`), 0o644))
		out, err := exec.Command(gcc, "-o", filepath.Join(dir, "int80"), src).CombinedOutput()
		require.NoError(t, err, string(out))
		if out, err := exec.Command(filepath.Join(dir, "int80")).CombinedOutput(); err != nil {
			t.Skipf("this machine cannot make i386 system calls (no IA32 emulation): %v %s", err, out)
		}
		out2, err := runFiltered(t, dir, "./int80")
		assertKilledBySIGSYS(t, err, out2)
	})
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s: %v", name, err)
	}
	return p
}
