// Package cgroup puts a sandbox's processes in a control group of their own,
// caps what they may use, reads what they used, kills them all and removes
// the group: one [Manager] over cgroup v1 and cgroup v2.
//
// # Versions
//
// [DetectMode] looks at /sys/fs/cgroup once, on first use. When it is a
// cgroup2 file system the machine is in unified mode ([V2]): a group is one
// directory, /sys/fs/cgroup/hutch/NAME, and New enables the memory, pids and
// cpu controllers in cgroup.subtree_control of every parent on the way down.
// Otherwise each controller has its own hierarchy ([V1]), found in
// /proc/self/mountinfo, and a group is a directory of the same name in each of
// the hierarchies hutch uses: memory, pids, cpuacct, freezer, and cpu when
// the group has a CPU limit or cpu is mounted together with cpuacct (as
// cpu,cpuacct). A cgroup2 file system mounted beside them (hybrid mode,
// /sys/fs/cgroup/unified) is not used.
//
// Every group lives under a parent, [DefaultParent] unless [Config] says
// otherwise, relative to the root of each hierarchy as this process sees it.
// Groups are leaves: hutch never puts a process in a parent.
//
// # Files
//
//	                  v1 (hierarchy: file)                  v2
//	Resources.Memory  memory: memory.limit_in_bytes,        memory.max,
//	                  memory.memsw.limit_in_bytes           memory.swap.max = 0
//	Resources.Pids    pids: pids.max                        pids.max
//	Resources.CPUs    cpu: cpu.cfs_period_us, cfs_quota_us  cpu.max
//	AddProc           cgroup.procs in each hierarchy        cgroup.procs
//	JoinFiles         tasks in each hierarchy               cgroup.procs
//	CPUUsage          cpuacct: cpuacct.usage                cpu.stat usage_usec
//	Stat StatCPU      cpuacct: cpuacct.usage, usage_user,   cpu.stat
//	                  usage_sys (cpuacct.stat if absent)
//	Stat StatMemory   memory: memory.max_usage_in_bytes,    memory.peak (memory.current),
//	                  memory.oom_control (memory.failcnt)   memory.events
//	Stat StatPids     pids: pids.current, pids.peak         pids.current, pids.peak
//	Kill              freezer: freezer.state, cgroup.procs  cgroup.kill (cgroup.freeze,
//	                                                        cgroup.procs), cgroup.events
//	Delete            rmdir in each hierarchy               rmdir
//
// The package writes and reads these files itself rather than through
// containerd's cgroup1 and cgroup2 managers, which it uses only for detecting
// the mode: they are several times slower for what hutch does, cannot kill a
// group and wait for it to empty, and read more than the hot path needs (the
// comment above readyParents in cgroup_linux.go has the details).
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"syscall"
	"time"
)

// Mode is the way the machine's cgroups are mounted.
type Mode int

const (
	// Unavailable means no cgroup file system that hutch can use is mounted.
	Unavailable Mode = iota
	// V1 is cgroup v1: one hierarchy per controller. Hybrid machines, with
	// an empty cgroup2 hierarchy beside the v1 ones, are V1 too.
	V1
	// V2 is cgroup v2, the unified hierarchy mounted at /sys/fs/cgroup.
	V2
)

// String returns "unavailable", "v1" or "v2".
func (m Mode) String() string {
	switch m {
	case Unavailable:
		return "unavailable"
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DefaultParent is the parent of every group whose [Config] names none, as a
// path relative to the root of each cgroup hierarchy: groups are /hutch/NAME.
const DefaultParent = "hutch"

// CPUPeriod is the CFS period that [Resources.CPUs] is expressed over.
const CPUPeriod = 100 * time.Millisecond

// Resources are the limits of a group. A nil field leaves the kernel's
// default, which is no limit.
type Resources struct {
	// Memory is the hard limit of the group's memory use, in bytes. Swap
	// is limited to zero at the same time, so a group cannot page out past
	// its limit. Must be positive.
	Memory *int64
	// Pids is the most tasks (processes and threads) the group may hold at
	// once; fork and clone fail with EAGAIN beyond it. Must be positive.
	Pids *int64
	// CPUs is the CPU bandwidth, in cores: 0.5 lets the group run half of
	// every [CPUPeriod] on one core, 2 lets it use two cores fully. Must be
	// at least 0.01 (the kernel's smallest quota is 1ms).
	CPUs *float64
}

func (r Resources) validate() error {
	if r.Memory != nil && *r.Memory <= 0 {
		return fmt.Errorf("memory limit %d is not positive", *r.Memory)
	}
	if r.Pids != nil && *r.Pids <= 0 {
		return fmt.Errorf("pids limit %d is not positive", *r.Pids)
	}
	if r.CPUs != nil {
		c := *r.CPUs
		if math.IsNaN(c) || math.IsInf(c, 0) || c < 0.01 || c > 1<<20 {
			return fmt.Errorf("CPUs %v is out of range [0.01, %d]", c, 1<<20)
		}
	}
	return nil
}

// cpuQuota returns the CFS quota for cpus over CPUPeriod, in microseconds.
func cpuQuota(cpus float64) int64 {
	return int64(math.Round(cpus * float64(CPUPeriod/time.Microsecond)))
}

// Config says which group [New] creates and how it limits it.
type Config struct {
	// Parent is the group's parent, a relative slash-separated path such as
	// "hutch" or "judge/workers"; "" means DefaultParent. New creates it
	// as needed and never removes one it did not create.
	Parent string
	// Name is the group's name: one path element, unique under Parent.
	// Required.
	Name string
	// Resources are the limits New applies.
	Resources Resources
	// NoFreezer leaves the group out of a cgroup v1 freezer hierarchy of
	// its own, for a group whose processes are killed some other way (all
	// of a PID namespace die with its init): one directory fewer to make,
	// join and remove. Kill then signals the processes it finds without
	// freezing them first. No effect on v2.
	NoFreezer bool
}

// groupPath checks cfg's parent and name and returns the group's path
// relative to a hierarchy's root, without a leading slash, and the parent's.
func (cfg Config) groupPath() (group, parent string, err error) {
	parent = strings.Trim(cfg.Parent, "/")
	if parent == "" {
		parent = DefaultParent
	}
	for _, e := range strings.Split(parent, "/") {
		if err := checkElem(e); err != nil {
			return "", "", fmt.Errorf("bad parent %q: %w", cfg.Parent, err)
		}
	}
	if err := checkElem(cfg.Name); err != nil {
		return "", "", fmt.Errorf("bad name %q: %w", cfg.Name, err)
	}
	return parent + "/" + cfg.Name, parent, nil
}

func checkElem(e string) error {
	switch {
	case e == "":
		return errors.New("empty path element")
	case e == "." || e == "..":
		return errors.New("relative path element")
	case strings.ContainsAny(e, "/\x00\n"):
		return errors.New("contains '/', NUL or newline")
	case len(e) > 255:
		return errors.New("longer than 255 bytes")
	}
	return nil
}

// StatMask selects what [Manager.Stat] reads.
type StatMask uint

const (
	// StatCPU fills the CPU fields of Stats.
	StatCPU StatMask = 1 << iota
	// StatMemory fills MemoryPeak, MemoryPeakExact and OOMKills.
	StatMemory
	// StatPids fills PidsPeak and PidsCurrent.
	StatPids
	// StatAll is every field.
	StatAll = StatCPU | StatMemory | StatPids
)

// Stats is what a group used. Fields that the mask passed to [Manager.Stat]
// did not ask for are zero.
type Stats struct {
	// CPUUsage is the CPU time the group's tasks used, user and system
	// together, to the nanosecond on v1 and the microsecond on v2.
	CPUUsage time.Duration
	// CPUUser and CPUSystem split it, less exactly: the kernel attributes
	// time to user or system mode at its accounting ticks, and on v1 kernels
	// without cpuacct.usage_user they are counted in USER_HZ ticks (10ms).
	CPUUser, CPUSystem time.Duration

	// MemoryPeak is the highest memory use of the group since it was
	// created, in bytes, page cache and kernel memory included: v2
	// memory.peak (Linux 5.19 and later), v1 memory.max_usage_in_bytes.
	// Where neither file exists it is the current use, and MemoryPeakExact
	// is false.
	MemoryPeak      int64
	MemoryPeakExact bool
	// OOMKills is how many tasks the kernel's OOM killer killed in the
	// group: v2 memory.events oom_kill, v1 memory.oom_control oom_kill
	// (Linux 4.13 and later). On older v1 kernels it is 1 when the group
	// ever hit its memory limit (memory.failcnt > 0) and 0 otherwise, which
	// can report an OOM kill that reclaim averted.
	OOMKills int64

	// PidsPeak is the most tasks the group held at once, where the kernel
	// has pids.peak (Linux 6.1 and later); 0 otherwise.
	PidsPeak int64
	// PidsCurrent is how many tasks the group holds now.
	PidsCurrent int64
}

// Error records a failed operation on a group. Err is the cause: an
// [*fs.PathError] from the file it could not read or write, or an error that
// wraps [errors.ErrUnsupported] where the machine lacks what was asked for.
// A read-only cgroup file system (EROFS) counts as a permission problem:
// errors.Is(err, fs.ErrPermission) holds for it as for EPERM and EACCES.
type Error struct {
	Op   string // what failed: "create", "set memory limit", "kill", ...
	Path string // the group, as Manager.Path returns it
	Err  error
}

func (e *Error) Error() string { return "cgroup " + e.Path + ": " + e.Op + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Is reports an EROFS cause as fs.ErrPermission.
func (e *Error) Is(target error) bool {
	return target == fs.ErrPermission && errors.Is(e.Err, syscall.EROFS)
}

// UnavailableError is [Enabled]'s answer when this process cannot use
// cgroups, so that a caller can fall back to running without them.
type UnavailableError struct {
	Mode   Mode   // what DetectMode found
	Reason string // why, in words
	// Err wraps errors.ErrUnsupported where the machine lacks cgroups or
	// a controller, and is the *Error from creating a probe group where
	// this process may not (errors.Is(err, fs.ErrPermission)).
	Err error
}

func (e *UnavailableError) Error() string {
	return "cgroup: unavailable (" + e.Mode.String() + "): " + e.Reason + ": " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// unsupported returns an error that says what is missing and wraps
// errors.ErrUnsupported.
func unsupported(what string) error {
	return fmt.Errorf("%s: %w", what, errors.ErrUnsupported)
}
