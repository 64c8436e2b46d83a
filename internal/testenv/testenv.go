// Package testenv holds helpers shared by hutch's tests: building a small
// busybox root filesystem and skipping tests the machine cannot run, with a
// message that names what is missing.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// BusyboxPaths are where a static busybox is looked for, in order. The
// HUTCH_BUSYBOX environment variable, when set, comes first.
var BusyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

var (
	applets     []string
	appletsErr  error
	appletsOnce sync.Once
)

// Busybox returns the path of a static busybox binary, or skips the test.
func Busybox(t testing.TB) string {
	t.Helper()
	paths := BusyboxPaths
	if p := os.Getenv("HUTCH_BUSYBOX"); p != "" {
		paths = append([]string{p}, paths...)
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	t.Skipf("needs a static busybox (apt-get install busybox-static): none of %v", paths)
	return ""
}

// BusyboxRoot builds a minimal root filesystem in a fresh temporary
// directory: busybox with a link for each applet in /bin, and the usual
// top-level directories. It returns the directory's path.
func BusyboxRoot(t testing.TB) string {
	t.Helper()
	bb := Busybox(t)
	root := t.TempDir()
	// The test's temp dir is 0700 by default; an unprivileged sandbox user
	// must be able to walk into it.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "etc", "proc", "dev", "tmp", "root", "usr/bin", "sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(bb, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	appletsOnce.Do(func() {
		out, err := exec.Command(bb, "--list").Output()
		if err != nil {
			appletsErr = err
			return
		}
		applets = strings.Fields(string(out))
	})
	if appletsErr != nil {
		t.Fatalf("busybox --list: %v", appletsErr)
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// CopyIntoRoot copies a host file into root at path rel with the given mode.
func CopyIntoRoot(t testing.TB, root, src, rel string, mode os.FileMode) {
	t.Helper()
	dst := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(src, dst, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (uid 0)")
	}
}

// SkipIfUnsupported skips the test when err says that the kernel or the
// machine does not allow what was tried (a namespace, a mount, a cgroup),
// naming what failed. It returns normally for any other error.
func SkipIfUnsupported(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
		errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) && strings.Contains(what, "namespace") ||
		errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this machine cannot %s: %v", what, err)
	}
}
