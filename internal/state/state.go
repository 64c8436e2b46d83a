// Package state locates hutch's runtime state directory: the one place where
// state that outlives a single call lives (generated images, sandboxes'
// upper directories, locks), so that a later process can find, reuse or
// remove what an earlier one left behind.
//
// The directory is chosen by [Dir] and created on demand by [Ensure]. It is
// runtime state: on a usual system it lives on a tmpfs (/run, or the user's
// XDG runtime directory) and is gone after a reboot, and everything hutch
// keeps there can be regenerated.
package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvDir is the environment variable that, when set to a non-empty value,
// overrides the state directory.
const EnvDir = "HUTCH_STATE_DIR"

// Dir returns the absolute path of hutch's state directory, without creating
// it:
//
//   - $HUTCH_STATE_DIR, when set and not empty (made absolute);
//   - /run/hutch when the process runs as root on Linux;
//   - $XDG_RUNTIME_DIR/hutch, when $XDG_RUNTIME_DIR is an absolute path;
//   - otherwise hutch-<uid> in [os.TempDir].
//
// Dir reads the environment on every call, so a change to it takes effect
// at once.
func Dir() string {
	return dirFor(os.Getenv, os.Geteuid(), runtime.GOOS)
}

// dirFor is [Dir] with its inputs made explicit, for tests.
func dirFor(getenv func(string) string, euid int, goos string) string {
	if d := getenv(EnvDir); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return filepath.Clean(d)
	}
	if euid == 0 && goos == "linux" {
		return "/run/hutch"
	}
	// The XDG base directory specification says to ignore a relative path.
	if d := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "hutch")
	}
	name := "hutch"
	if euid >= 0 { // -1 on Windows
		name += "-" + strconv.Itoa(euid)
	}
	return filepath.Join(os.TempDir(), name)
}

// Ensure creates the state directory and the directory sub below it, as
// needed, and returns the path of the latter: filepath.Join(Dir(), sub...).
// The elements of sub must join to a local path (see [filepath.IsLocal]);
// with none, Ensure returns the state directory itself.
//
// The state directory is created with mode 0700 (missing parents with 0755):
// it keeps other users of the host out, and no sandbox ever sees it. It must
// be owned by the effective user and writable by no one else, or Ensure
// fails with an error that wraps [fs.ErrPermission]: another user able to
// write there could plant an image that the caller then runs. This also
// refuses a shared directory such as /tmp as $HUTCH_STATE_DIR.
//
// Directories below it are created with mode 0755, whatever the umask. An
// image layer or upper directory made there becomes part of a sandbox's
// root, where its mode is what the sandbox's processes see, and they may run
// as a user other than the owner. Existing directories are left as they are.
func Ensure(sub ...string) (string, error) {
	top := Dir()
	rel := filepath.Join(sub...)
	if rel != "" && !filepath.IsLocal(rel) {
		return "", &fs.PathError{Op: "state", Path: rel, Err: fmt.Errorf("%w: not a local path", fs.ErrInvalid)}
	}
	dir := filepath.Join(top, rel)
	// Every run ensures its directories: one that this process made or
	// checked is taken on a single stat (a dozen system calls fewer).
	if _, ok := ensured.Load(dir); ok {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, nil
		}
		ensured.Delete(dir)
	}
	if err := ensureTop(top); err != nil {
		return "", err
	}
	if rel != "" {
		p := top
		for _, elem := range strings.Split(rel, string(filepath.Separator)) {
			p = filepath.Join(p, elem)
			if err := mkdir(p, 0o755); err != nil {
				return "", err
			}
		}
	}
	ensured.Store(dir, struct{}{})
	return dir, nil
}

// ensured holds the directories Ensure made or checked.
var ensured sync.Map // string -> struct{}

// ensureTop creates the state directory if needed and checks who may write
// to it.
func ensureTop(top string) error {
	if err := os.MkdirAll(filepath.Dir(top), 0o755); err != nil {
		return err
	}
	if err := mkdir(top, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(top)
	if err != nil {
		return err
	}
	if uid, ok := owner(fi); ok && uid != os.Geteuid() {
		return &fs.PathError{Op: "state", Path: top,
			Err: fmt.Errorf("owned by uid %d, not %d: %w", uid, os.Geteuid(), fs.ErrPermission)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 && runtime.GOOS != "windows" {
		return &fs.PathError{Op: "state", Path: top,
			Err: fmt.Errorf("writable by group or others (mode %#o): %w", perm, fs.ErrPermission)}
	}
	return nil
}

// mkdir creates the directory path with exactly mode perm, or checks that a
// directory is already there.
func mkdir(path string, perm fs.FileMode) error {
	err := os.Mkdir(path, perm)
	if err == nil {
		// Mkdir's mode is filtered through the umask.
		return os.Chmod(path, perm)
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, serr := os.Stat(path)
	if serr != nil {
		return serr
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	}
	return nil
}
