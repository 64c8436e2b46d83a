package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/state"
)

// A run or sandbox that makes a cgroup first takes a lock under the state
// directory: a file, held with flock for as long as its owner lives, that
// names the cgroup. A lock that can be taken belongs to a dead owner (a
// process killed with SIGKILL, say), and what it names is garbage.

// runLock is a held lock.
type runLock struct {
	f    *os.File
	path string
}

// lockRecord is what a lock file holds.
type lockRecord struct {
	Parent string `json:"cgroup_parent"`
	Name   string `json:"cgroup_name"`
	Pid    int    `json:"pid"`
}

func takeRunLock(group *cgroup.Config) (*runLock, error) {
	dir, err := state.Ensure("locks")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, group.Name+".lock")
	rec, _ := json.Marshal(lockRecord{Parent: group.Parent, Name: group.Name, Pid: os.Getpid()})
	// The file appears under its name already locked and written: made
	// unnamed (O_TMPFILE), locked, then linked into place. A lock file
	// created under its name and locked after would let another process's
	// CollectGarbage take it in between, as if its owner were dead.
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, os.NewSyscallError("open O_TMPFILE", err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, os.NewSyscallError("flock", err)
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		f.Close()
		return nil, os.NewSyscallError("linkat", err)
	}
	return &runLock{f: f, path: path}, nil
}

// newLockedGroup takes the lock naming group, then creates the group. The
// lock is returned, held, also when only the group failed: its owner
// releases it as it would after removing the group. name holds the number
// in the group's name (see newGroup).
func newLockedGroup(group *cgroup.Config, name *nameHolder) (*runLock, *cgroup.Manager, error) {
	lock, err := takeRunLock(group)
	if err != nil {
		name.markStale() // the lock's name may be taken: by a stale lock, say
		return nil, nil, &SetupError{Stage: "lock state", Err: err}
	}
	cg, err := newGroup(group, name)
	return lock, cg, err
}

// stageCreateCgroup is the Stage of a SetupError for a group not made.
const stageCreateCgroup = "create cgroup"

// newGroup creates group, with a setup error. On failure the number name
// holds, in the group's name, is marked stale: the name may be taken, by a
// group a crashed process left, say.
func newGroup(group *cgroup.Config, name *nameHolder) (*cgroup.Manager, error) {
	cg, err := cgroup.New(*group)
	if err != nil {
		name.markStale()
		return nil, &SetupError{Stage: stageCreateCgroup, Err: err}
	}
	return cg, nil
}

// freeGroup removes a group, killing what is left in it, then the lock that
// names it (either may be nil), then gives their name back, unless one of
// them may remain. It returns the group's removal error.
func freeGroup(cg *cgroup.Manager, lock *runLock, name *nameHolder) error {
	var err error
	if cg != nil {
		if err = deleteGroup(cg); err != nil {
			name.markStale()
		}
	}
	if lock != nil && lock.release() != nil {
		name.markStale()
	}
	name.giveBack()
	return err
}

// release removes the lock; the cgroup it names must be gone by then.
func (l *runLock) release() error {
	err := os.Remove(l.path)
	l.f.Close()
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return err
}

var gcOnce sync.Once

// collectGarbageOnce removes, once per process, what dead owners left.
func collectGarbageOnce() {
	gcOnce.Do(func() { CollectGarbage() })
}

// GCReport is what CollectGarbage removed.
type GCReport struct {
	// Cgroups are the groups removed (their processes killed first).
	Cgroups []string
	// Locks are the lock files of dead owners removed.
	Locks []string
}

// CollectGarbage finds what runs and sandboxes of processes that died
// without cleaning up (killed with SIGKILL, say) left on this machine, and
// removes it: their cgroups, with anything still running in them, and their
// lock files. A live owner's lock is never taken, so nothing in use is
// touched. Every process that uses this package does it once, at its first
// run; `hutch gc` does it by hand.
func CollectGarbage() (*GCReport, error) {
	rep := &GCReport{}
	dir := filepath.Join(state.Dir(), "locks")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return rep, nil
		}
		return rep, err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".lock") {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		rec, ok := deadLock(f, path)
		if !ok {
			f.Close()
			continue
		}
		if rec.Name != "" && rec.Pid != os.Getpid() {
			removed, err := removeGroupTree(rec.Parent, rec.Name)
			rep.Cgroups = append(rep.Cgroups, removed...)
			if err != nil {
				errs = append(errs, err)
				f.Close()
				continue
			}
		}
		os.Remove(path)
		rep.Locks = append(rep.Locks, name)
		f.Close()
	}
	return rep, errors.Join(errs...)
}

// deadLock takes the lock f, opened at path, and returns its record, if
// its owner is dead. A live owner may have released f since it was opened
// and linked a new lock under the same name (names are reused): only the
// file still at path counts, and its record is read from f itself.
func deadLock(f *os.File, path string) (lockRecord, bool) {
	var rec lockRecord
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return rec, false // alive
	}
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &named) != nil ||
		held.Dev != named.Dev || held.Ino != named.Ino {
		return rec, false // released, and maybe replaced
	}
	b, err := io.ReadAll(f)
	if err != nil || json.Unmarshal(b, &rec) != nil {
		rec = lockRecord{}
	}
	return rec, true
}

// removeGroupTree kills and removes a group and its children.
func removeGroupTree(parent, name string) ([]string, error) {
	m, err := cgroup.Open(cgroup.Config{Parent: parent, Name: name})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	children, _ := m.Children()
	if parent == "" {
		parent = cgroup.DefaultParent
	}
	for _, c := range children {
		sub, err := removeGroupTree(parent+"/"+name, c)
		removed = append(removed, sub...)
		if err != nil {
			return removed, err
		}
	}
	if err := m.Kill(); err != nil {
		return removed, err
	}
	if err := m.Delete(); err != nil {
		return removed, err
	}
	return append(removed, m.Path()), nil
}
