package probe

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

func requireLane(t *testing.T) {
	t.Helper()
	if lane := os.Getenv("HUTCH_TEST_LANE"); lane != "vm-cgroup2" {
		t.Skipf("runs only in the cgroup v2 VM lane (test/vm/run); HUTCH_TEST_LANE=%q", lane)
	}
}

func TestCgroup2Mounted(t *testing.T) {
	requireLane(t)
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		t.Fatalf("statfs %s: %v", cgroupRoot, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("%s: filesystem magic %#x, want cgroup2 (%#x)", cgroupRoot, st.Type, unix.CGROUP2_SUPER_MAGIC)
	}
	// Unified only: no v1 hierarchy may show up in /proc/self/cgroup.
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "0::/") {
		t.Fatalf("/proc/self/cgroup is not unified-only:\n%s", data)
	}
	t.Logf("lane=%s cgroup=%s", os.Getenv("HUTCH_TEST_LANE"), strings.TrimPrefix(lines[0], "0::"))
}

func TestControllers(t *testing.T) {
	requireLane(t)
	want := []string{"memory", "pids", "cpu"}
	data, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(data))
	for _, c := range want {
		if !slices.Contains(have, c) {
			t.Fatalf("controller %q not available at %s: have %v", c, cgroupRoot, have)
		}
	}

	// Enable them for the root's children (restoring the root's state
	// afterwards), make a child cgroup, set limits and run a process in it.
	ctl := filepath.Join(cgroupRoot, "cgroup.subtree_control")
	before, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want {
		if slices.Contains(strings.Fields(string(before)), c) {
			continue
		}
		if err := os.WriteFile(ctl, []byte("+"+c), 0); err != nil {
			t.Fatalf("enable %s in %s: %v", c, ctl, err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(ctl, []byte("-"+c), 0); err != nil {
				t.Errorf("disable %s in %s: %v", c, ctl, err)
			}
		})
	}

	dir := filepath.Join(cgroupRoot, "hutch-probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	limits := map[string]string{"memory.max": "67108864", "memory.swap.max": "0", "pids.max": "16", "cpu.max": "50000 100000"}
	for f, v := range limits {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0); err != nil {
			t.Fatalf("write %s: %v", f, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(got)) != v {
			t.Fatalf("%s = %q after writing %q", f, got, v)
		}
	}

	// A process started straight into the cgroup (clone3 CLONE_INTO_CGROUP).
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command("/bin/sh", "-c", "cat /proc/self/cgroup")
	cmd.SysProcAttr = &unix.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run in cgroup: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "0::/"+filepath.Base(dir); got != want {
		t.Fatalf("child's /proc/self/cgroup = %q, want %q", got, want)
	}
	events, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(events, []byte("populated 0")) {
		t.Fatalf("cgroup still populated after the child exited:\n%s", events)
	}
}

// TestOverlay mounts an overlay in a new mount namespace of a locked OS
// thread, which the runtime throws away when the goroutine ends.
func TestOverlay(t *testing.T) {
	requireLane(t)
	base := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"keep", "gone"} {
		if err := os.WriteFile(filepath.Join(base, "lower", f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return &os.SyscallError{Syscall: "unshare(CLONE_NEWNS)", Err: err}
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return &os.PathError{Op: "make private", Path: "/", Err: err}
			}
			merged := filepath.Join(base, "merged")
			opts := "lowerdir=" + filepath.Join(base, "lower") + ",upperdir=" + filepath.Join(base, "upper") + ",workdir=" + filepath.Join(base, "work")
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				return &os.PathError{Op: "mount overlay", Path: merged, Err: err}
			}
			if err := os.WriteFile(filepath.Join(merged, "new"), []byte("new"), 0o644); err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(merged, "gone")); err != nil {
				return err
			}
			got, err := os.ReadFile(filepath.Join(merged, "keep"))
			if err != nil {
				return err
			}
			if string(got) != "keep" {
				t.Errorf("merged/keep = %q", got)
			}
			// PID 1 (the VM's init) shares the test's original mount
			// namespace, which must not see the overlay.
			initMounts, err := os.ReadFile("/proc/1/mountinfo")
			if err != nil {
				return err
			}
			if bytes.Contains(initMounts, []byte(" "+merged+" ")) {
				t.Errorf("the overlay on %s leaked into init's mount namespace", merged)
			}
			return unix.Unmount(merged, 0)
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// The writes went to the upper dir, the lower dir is untouched, and the
	// removal left a whiteout (a 0/0 character device).
	if _, err := os.Stat(filepath.Join(base, "upper", "new")); err != nil {
		t.Errorf("upper/new: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "lower", "gone")); err != nil {
		t.Errorf("lower/gone: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(base, "upper", "gone"), &st); err != nil {
		t.Fatalf("whiteout upper/gone: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/gone: mode %#o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
}

func TestEnvironment(t *testing.T) {
	requireLane(t)
	if os.Geteuid() != 0 {
		t.Errorf("euid %d, want 0", os.Geteuid())
	}
	for _, p := range []string{"/bin/busybox", "/bin/sh"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	out, err := exec.Command("sh", "-c", "echo ok").CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("sh -c 'echo ok' = %q, %v", out, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(os.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < 512<<20 {
		t.Errorf("%s: %d MiB free, want at least 512", os.TempDir(), free>>20)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	ln.Close()
}

func TestInjectedFailure(t *testing.T) {
	requireLane(t)
	if os.Getenv("HUTCH_TEST_VM_PROBE_FAIL") == "" {
		t.Skip("set HUTCH_TEST_VM_PROBE_FAIL=1 to check that the lane reports a failing package")
	}
	t.Error("failing on request (HUTCH_TEST_VM_PROBE_FAIL is set)")
}
