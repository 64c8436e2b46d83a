package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// unifiedMountpoint is where cgroup v2 is mounted in unified mode, the only
// place where hutch uses it (containerd's Mode looks there too).
const unifiedMountpoint = "/sys/fs/cgroup"

// system is what DetectMode found, once per process.
type system struct {
	mode Mode
	// The root of the hierarchy of each controller hutch uses, "" where it
	// is not mounted (v1). On v2 they are all the unified mount point: its
	// core files (cgroup.procs, cgroup.kill, cgroup.freeze, cpu.stat) exist
	// whatever controllers are enabled.
	memory, pids, cpu, cpuacct, freezer string
	// roots are the distinct hierarchy roots above, in that order.
	roots []string
	// missing are the controllers hutch needs that the machine lacks: not
	// mounted (v1) or not in the root's cgroup.controllers (v2).
	missing []string
	// rootFDs hold roots open (see at).
	rootFDsOnce sync.Once
	rootFDs     []int
}

// v2Controllers are the controllers New enables for its groups on v2.
var v2Controllers = []string{"cpu", "memory", "pids"}

var detected = sync.OnceValue(detect)

// DetectMode returns how the machine's cgroups are mounted. It looks once,
// on first use, and remembers the answer.
func DetectMode() Mode { return detected().mode }

func detect() *system {
	// containerd's Mode statfs()es /sys/fs/cgroup and, when that is not
	// cgroup2, /sys/fs/cgroup/unified (hybrid). Either way hutch uses v1.
	switch cgroups.Mode() {
	case cgroups.Unified:
		return detectV2()
	case cgroups.Legacy, cgroups.Hybrid:
		return detectV1()
	}
	return &system{mode: Unavailable}
}

func detectV2() *system {
	r := unifiedMountpoint
	s := &system{mode: V2, memory: r, pids: r, cpu: r, cpuacct: r, freezer: r, roots: []string{r}}
	data, _ := os.ReadFile(r + "/cgroup.controllers")
	have := strings.Fields(string(data))
	for _, c := range v2Controllers {
		if !slices.Contains(have, c) {
			s.missing = append(s.missing, c)
		}
	}
	return s
}

// detectV1 finds the hierarchies in /proc/self/mountinfo rather than
// assuming /sys/fs/cgroup/NAME: controllers may be mounted together
// (cpu,cpuacct) under other names, or elsewhere.
func detectV1() *system {
	s := &system{mode: V1}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return &system{mode: Unavailable}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		mnt := unescapeMount(pf[4])
		for _, opt := range strings.Split(qf[2], ",") {
			var p *string
			switch opt {
			case "memory":
				p = &s.memory
			case "pids":
				p = &s.pids
			case "cpu":
				p = &s.cpu
			case "cpuacct":
				p = &s.cpuacct
			case "freezer":
				p = &s.freezer
			default:
				continue
			}
			if *p == "" { // the first mount; later ones are bind mounts
				*p = mnt
			}
		}
	}
	for _, c := range []struct{ name, root string }{
		{"memory", s.memory}, {"pids", s.pids}, {"cpu", s.cpu}, {"cpuacct", s.cpuacct}, {"freezer", s.freezer},
	} {
		switch {
		case c.root == "":
			if c.name != "freezer" { // Kill copes without it
				s.missing = append(s.missing, c.name)
			}
		case !slices.Contains(s.roots, c.root):
			s.roots = append(s.roots, c.root)
		}
	}
	if len(s.roots) == 0 {
		return &system{mode: Unavailable}
	}
	return s
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}

func (s *system) lacks(controller string) bool { return slices.Contains(s.missing, controller) }

// Enabled reports whether this process can create groups under
// DefaultParent, by creating and removing one (DefaultParent itself is
// created if need be, and stays). It returns nil if so, and
// otherwise an *UnavailableError that says why, so that a caller can fall
// back to running without cgroups.
func Enabled() error {
	if err := Available(); err != nil {
		return err
	}
	s := detected()
	name := fmt.Sprintf(".probe-%d-%d", os.Getpid(), probes.Add(1))
	m, err := New(Config{Name: name})
	if err != nil {
		return &UnavailableError{Mode: s.mode, Reason: "cannot create a group under /" + DefaultParent, Err: err}
	}
	if err := m.Delete(); err != nil {
		return &UnavailableError{Mode: s.mode, Reason: "cannot remove a group under /" + DefaultParent, Err: err}
	}
	return nil
}

var probes atomic.Uint64

// Available is the part of Enabled that creates nothing: it reports
// whether a cgroup file system with every controller hutch uses is
// mounted, as an *UnavailableError when not. Whether this process may
// create groups there only creating one tells.
func Available() error {
	s := detected()
	if s.mode == Unavailable {
		return &UnavailableError{Mode: s.mode, Reason: "no cgroup file system",
			Err: unsupported("no cgroup v1 controller or cgroup2 file system is mounted at " + unifiedMountpoint)}
	}
	if len(s.missing) > 0 {
		return &UnavailableError{Mode: s.mode, Reason: "missing controllers",
			Err: unsupported("controllers not available: " + strings.Join(s.missing, ", "))}
	}
	return nil
}

// Manager is one group. Its methods may be called from several goroutines
// at once.
type Manager struct {
	sys  *system
	path string // "/hutch/NAME"
	// The group's directory in the hierarchy of each controller, "" where
	// that controller is not mounted (v1); on v2 all are the one directory.
	memory, pids, cpu, cpuacct, freezer string
	dirs                                []string // distinct, in the order of sys.roots
	cpuUsageFile                        string   // read by CPUUsage, prepared here as it is polled
}

// Why the Manager works on the cgroup files itself instead of through
// containerd's cgroup1 and cgroup2 managers (it uses containerd's Mode):
//
//   - Speed. cgroup1.New parses /proc/self/mountinfo on every call (and
//     assumes every hierarchy sits beside the first one it finds), and
//     cgroup1's Delete walks each hierarchy's directory for tasks before
//     removing it: New+Delete with the same limits in the same hierarchies
//     take about 3.5x the time and 14x the allocations of ours (~560µs and
//     531 allocations against ~160µs and 39 on the v1 development machine;
//     with containerd's default of every mounted hierarchy, ~1.1ms). What is
//     left of ours is mostly the kernel's mkdir and rmdir.
//   - Kill. cgroup1 has none. cgroup2's writes cgroup.kill and returns
//     without waiting for the group to empty; before Linux 5.14 it falls back
//     to wait(2)ing for every killed pid, which would reap the sandbox's own
//     child from under the caller's wait4 and lose its status and rusage.
//   - Stats. Both read whole files (memory.stat, the PSI files) where a
//     CPU-time watchdog needs one number.
//   - cgroup2.NewManager writes cgroup.subtree_control from the root down on
//     every call and removes only the leaf when it fails.
//   - Importing either pulls runtime-spec, protobuf, cilium/ebpf, logrus
//     and dbus into every program that embeds hutch.

// readyParents holds the parents that this process has created or checked,
// with their controllers enabled on v2: New does that work once per parent,
// and again only if the parent disappears.
var readyParents sync.Map // string -> struct{}

// New creates the group cfg.Parent/cfg.Name, creating the parent as needed,
// applies cfg.Resources and returns the group. If it fails it removes
// whatever it created. Its errors are *Error; they satisfy
// errors.Is(err, fs.ErrPermission) when this process may not create
// groups, errors.Is(err, fs.ErrExist) when the group exists already, and
// errors.Is(err, errors.ErrUnsupported) when the machine has no cgroups or
// lacks a controller that cfg.Resources needs.
//
// The parent is created, and on v2 its controllers enabled, once per
// process; New then costs one mkdir per hierarchy plus one write per limit.
func New(cfg Config) (*Manager, error) {
	group, parent, err := cfg.groupPath()
	if err != nil {
		return nil, &Error{Op: "create", Path: "/" + strings.Trim(cfg.Parent, "/") + "/" + cfg.Name, Err: err}
	}
	s := detected()
	m := s.manager(group, cfg.Resources.CPUs != nil, !cfg.NoFreezer)
	if err := cfg.Resources.validate(); err != nil {
		return nil, &Error{Op: "create", Path: m.path, Err: err}
	}
	if s.mode == Unavailable {
		return nil, &Error{Op: "create", Path: m.path, Err: unsupported("no cgroup file system is mounted")}
	}
	for _, need := range []struct {
		set  bool
		name string
	}{
		{cfg.Resources.Memory != nil, "memory"},
		{cfg.Resources.Pids != nil, "pids"},
		{cfg.Resources.CPUs != nil, "cpu"},
	} {
		if need.set && s.lacks(need.name) {
			return nil, &Error{Op: "create", Path: m.path, Err: unsupported(need.name + " controller not available")}
		}
	}

	var madeParents []string
	undo := func() {
		m.rmdir()
		for i := len(madeParents) - 1; i >= 0; i-- {
			rmdir(madeParents[i]) // EBUSY: another group appeared in it; keep it
		}
	}
	_, ready := readyParents.Load(parent)
	retried := false
	for made := 0; made < len(m.dirs); {
		if !ready {
			p, err := s.makeParent(parent)
			madeParents = append(madeParents, p...)
			if err != nil {
				m.dirs = m.dirs[:made] // undo removes only what this call made
				undo()
				return nil, &Error{Op: "create parent", Path: m.path, Err: err}
			}
			readyParents.Store(parent, struct{}{})
			ready = true
		}
		dir := m.dirs[made]
		err := mkdir(dir, 0o755)
		if err == unix.ENOENT && !retried {
			// The parent was removed since this process made it.
			retried = true
			readyParents.Delete(parent)
			ready = false
			continue
		}
		if err != nil {
			m.dirs = m.dirs[:made]
			undo()
			return nil, &Error{Op: "create", Path: m.path, Err: &fs.PathError{Op: "mkdir", Path: dir, Err: err}}
		}
		made++
	}
	if err := m.apply(cfg.Resources); err != nil {
		undo()
		return nil, err
	}
	return m, nil
}

// Open returns the existing group cfg.Parent/cfg.Name without changing it,
// for example to kill and remove one that a crashed process left behind.
// cfg.Resources is ignored. If the group does not exist the error satisfies
// errors.Is(err, fs.ErrNotExist).
func Open(cfg Config) (*Manager, error) {
	group, _, err := cfg.groupPath()
	if err != nil {
		return nil, &Error{Op: "open", Path: "/" + strings.Trim(cfg.Parent, "/") + "/" + cfg.Name, Err: err}
	}
	s := detected()
	m := s.manager(group, true, true)
	if s.mode == Unavailable {
		return nil, &Error{Op: "open", Path: m.path, Err: unsupported("no cgroup file system is mounted")}
	}
	// Keep the hierarchies the group is in (on v1, cpu only if it was
	// given a CPU limit, freezer unless it was made without).
	var err1 error
	dirs := m.dirs[:0]
	for _, d := range m.dirs {
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		} else if err1 == nil {
			err1 = err
		}
	}
	if len(dirs) == 0 {
		return nil, &Error{Op: "open", Path: m.path, Err: err1}
	}
	m.dirs = dirs
	if !slices.Contains(dirs, m.cpu) {
		m.cpu = ""
	}
	if !slices.Contains(dirs, m.freezer) {
		m.freezer = ""
	}
	return m, nil
}

func (s *system) manager(group string, withCPU, withFreezer bool) *Manager {
	m := &Manager{sys: s, path: "/" + group}
	dir := func(root string) string {
		if root == "" {
			return ""
		}
		return root + "/" + group
	}
	// On v1, a hierarchy only for a controller the group does without is
	// left out (one that holds another controller too is needed anyway).
	leaveOut := func(want bool, root string, others ...string) string {
		if s.mode == V1 && !want && !slices.Contains(others, root) {
			return ""
		}
		return root
	}
	freezerRoot := leaveOut(withFreezer, s.freezer, s.memory, s.pids, s.cpu, s.cpuacct)
	cpuRoot := leaveOut(withCPU, s.cpu, s.memory, s.pids, s.cpuacct, freezerRoot)
	m.memory, m.pids, m.cpu, m.cpuacct, m.freezer = dir(s.memory), dir(s.pids), dir(cpuRoot), dir(s.cpuacct), dir(freezerRoot)
	for _, r := range s.roots {
		if (r == s.cpu && r != cpuRoot) || (r == s.freezer && r != freezerRoot) {
			continue
		}
		m.dirs = append(m.dirs, dir(r))
	}
	switch {
	case s.mode == V2:
		m.cpuUsageFile = m.cpuacct + "/cpu.stat"
	case m.cpuacct != "":
		m.cpuUsageFile = m.cpuacct + "/cpuacct.usage"
	}
	return m
}

// makeParent creates parent in every hierarchy and, on v2, enables the
// controllers for its children from the root down. It returns the
// directories it created, deepest last.
func (s *system) makeParent(parent string) (made []string, err error) {
	elems := strings.Split(parent, "/")
	for _, root := range s.roots {
		dir := root
		for i := 0; ; i++ {
			if s.mode == V2 {
				if err := enableControllers(dir); err != nil {
					return made, err
				}
			}
			if i == len(elems) {
				break
			}
			dir += "/" + elems[i]
			switch err := mkdir(dir, 0o755); err {
			case nil:
				made = append(made, dir)
			case unix.EEXIST:
			default:
				return made, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
			}
		}
	}
	return made, nil
}

// enableControllers enables, in dir's cgroup.subtree_control, those of
// v2Controllers that dir has and has not enabled yet. It writes nothing when
// all are enabled, so that it works in a parent that is delegated to this
// process without write access to that file.
func enableControllers(dir string) error {
	var buf [256]byte
	n, err := readFile(dir+"/cgroup.controllers", buf[:])
	if err != nil {
		return err
	}
	have := strings.Fields(string(buf[:n]))
	n, err = readFile(dir+"/cgroup.subtree_control", buf[:])
	if err != nil {
		return err
	}
	on := strings.Fields(string(buf[:n]))
	var add []string
	for _, c := range v2Controllers {
		if slices.Contains(have, c) && !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	// One write enables them all or, if one fails, none.
	err = writeFile(dir+"/cgroup.subtree_control", []byte(strings.Join(add, " ")))
	if errors.Is(err, unix.EBUSY) {
		// "No internal processes": a cgroup other than the root that holds
		// processes cannot enable controllers for children.
		err = fmt.Errorf("%w (the cgroup holds processes; give hutch a parent that holds none)", err)
	}
	return err
}

var (
	zero = []byte("0")
	one  = []byte("1")
)

func (m *Manager) apply(r Resources) error {
	set := func(what string, err error) error {
		if err == nil {
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w (is the controller enabled in the parent?)", err)
		}
		return &Error{Op: "set " + what, Path: m.path, Err: err}
	}
	v2 := m.sys.mode == V2
	if r.Memory != nil {
		if v2 {
			if err := writeInt(m.memory+"/memory.max", *r.Memory); err != nil {
				return set("memory limit", err)
			}
			// Without swap accounting (swapaccount=0) there is no file and
			// no swap to limit.
			if err := writeFile(m.memory+"/memory.swap.max", zero); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return set("swap limit", err)
			}
		} else {
			// The memory limit first: memsw must stay >= it, and both start
			// unlimited.
			if err := writeInt(m.memory+"/memory.limit_in_bytes", *r.Memory); err != nil {
				return set("memory limit", err)
			}
			if err := writeInt(m.memory+"/memory.memsw.limit_in_bytes", *r.Memory); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return set("swap limit", err)
			}
		}
	}
	if r.Pids != nil {
		if err := writeInt(m.pids+"/pids.max", *r.Pids); err != nil {
			return set("pids limit", err)
		}
	}
	if r.CPUs != nil {
		quota, period := cpuQuota(*r.CPUs), int64(CPUPeriod/time.Microsecond)
		if v2 {
			if err := writeFile(m.cpu+"/cpu.max", fmt.Appendf(nil, "%d %d", quota, period)); err != nil {
				return set("CPU limit", err)
			}
		} else {
			if err := writeInt(m.cpu+"/cpu.cfs_period_us", period); err != nil {
				return set("CPU period", err)
			}
			if err := writeInt(m.cpu+"/cpu.cfs_quota_us", quota); err != nil {
				return set("CPU limit", err)
			}
		}
	}
	// memory.oom.group is left at 0 on v2: v1 has no equivalent, and the
	// sandbox's init, in the group too, must outlive an OOM kill of the
	// command to report its status. OOMKills tells the caller either way.
	return nil
}

// Mode returns the cgroup version the group is in.
func (m *Manager) Mode() Mode { return m.sys.mode }

// Path returns the group's path relative to each hierarchy's root, such as
// "/hutch/NAME".
func (m *Manager) Path() string { return m.path }

// AddProc moves the process pid, all its threads, into the group (in every
// hierarchy, on v1). Its children are born in the group.
func (m *Manager) AddProc(pid int) error {
	if pid <= 0 {
		return &Error{Op: "add process", Path: m.path, Err: fmt.Errorf("bad pid %d", pid)}
	}
	var buf [24]byte
	b := strconv.AppendInt(buf[:0], int64(pid), 10)
	for _, d := range m.dirs {
		if err := writeFile(d+"/cgroup.procs", b); err != nil {
			return &Error{Op: "add process", Path: m.path, Err: err}
		}
	}
	return nil
}

// OpenDir opens the group's directory on v2, for placing a child in the
// group as it is created: clone3's CLONE_INTO_CGROUP, which os/exec offers
// as syscall.SysProcAttr's UseCgroupFD and CgroupFD (Linux 5.7 and later).
// The caller closes the file. On v1 the error wraps errors.ErrUnsupported.
func (m *Manager) OpenDir() (*os.File, error) {
	if m.sys.mode != V2 {
		return nil, &Error{Op: "open directory", Path: m.path, Err: unsupported("CLONE_INTO_CGROUP needs cgroup v2")}
	}
	f, err := openFile(m.dirs[0], unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, &Error{Op: "open directory", Path: m.path, Err: err}
	}
	return f, nil
}

// CPUUsage returns the CPU time the group's tasks used, in one file read,
// for a watchdog to poll: cpuacct.usage on v1, usage_usec in cpu.stat on v2.
func (m *Manager) CPUUsage() (time.Duration, error) {
	c, err := m.OpenCPUCounter()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.Read()
}

// cpuUsageError is err, met reading the group's CPU usage.
func (m *Manager) cpuUsageError(err error) error {
	return &Error{Op: "read CPU usage", Path: m.path, Err: err}
}

// cpuUsage parses what the group's CPU usage file says.
func (m *Manager) cpuUsage(data []byte) (time.Duration, error) {
	var (
		used time.Duration
		err  error
	)
	if m.sys.mode == V1 {
		var ns int64
		ns, err = parseInt(m.cpuUsageFile, data)
		used = time.Duration(ns)
	} else {
		var v [1]int64
		var found uint
		found, err = parseKeys(m.cpuUsageFile, data, usageKey[:], v[:])
		if err == nil && found == 0 {
			err = fmt.Errorf("%s: no usage_usec", m.cpuUsageFile)
		}
		used = time.Duration(v[0]) * time.Microsecond
	}
	if err != nil {
		return 0, m.cpuUsageError(err)
	}
	return used, nil
}

// CPUCounter reads a group's CPU usage, as CPUUsage does, through the file
// opened once: each Read is one pread, without the lookup, open and close
// of a CPUUsage. (A run reads its group's usage when its command starts
// and again when it ends.) Its methods are not for concurrent use.
type CPUCounter struct {
	m  *Manager
	fd int
}

// OpenCPUCounter opens the group's CPU usage file; the caller closes the
// counter.
func (m *Manager) OpenCPUCounter() (*CPUCounter, error) {
	if m.cpuUsageFile == "" {
		return nil, m.cpuUsageError(unsupported("cpuacct controller not mounted"))
	}
	fd, err := open(m.cpuUsageFile, unix.O_RDONLY)
	if err != nil {
		return nil, m.cpuUsageError(err)
	}
	return &CPUCounter{m: m, fd: fd}, nil
}

// Read returns the CPU time the group's tasks used so far.
func (c *CPUCounter) Read() (time.Duration, error) {
	var buf [512]byte
	n, err := readAt0(c.fd, c.m.cpuUsageFile, buf[:])
	if err != nil {
		return 0, c.m.cpuUsageError(err)
	}
	return c.m.cpuUsage(buf[:n])
}

// Close closes the counter's file.
func (c *CPUCounter) Close() error { return unix.Close(c.fd) }

var (
	usageKey    = [...]string{"usage_usec"}
	cpuStatKeys = [...]string{"usage_usec", "user_usec", "system_usec"}
	oomKillKey  = [...]string{"oom_kill"}
	cpuacctKeys = [...]string{"user", "system"}
)

// userHZ is the unit of v1's cpuacct.stat: USER_HZ is 100 on every
// architecture Go supports.
const userHZ = 100

// Stat reads what the group used. It reads only the files that mask asks
// for; the fields it did not ask for are zero. Files that older kernels
// lack are documented on Stats; a missing controller gives an error
// wrapping errors.ErrUnsupported.
func (m *Manager) Stat(mask StatMask) (*Stats, error) {
	st := new(Stats)
	if mask&StatCPU != 0 {
		if err := m.statCPU(st); err != nil {
			return nil, &Error{Op: "read CPU stats", Path: m.path, Err: err}
		}
	}
	if mask&StatMemory != 0 {
		if err := m.statMemory(st); err != nil {
			return nil, &Error{Op: "read memory stats", Path: m.path, Err: err}
		}
	}
	if mask&StatPids != 0 {
		if err := m.statPids(st); err != nil {
			return nil, &Error{Op: "read pids stats", Path: m.path, Err: err}
		}
	}
	return st, nil
}

func (m *Manager) statCPU(st *Stats) error {
	if m.sys.mode == V2 {
		var v [3]int64
		if _, err := readKeys(m.cpuacct+"/cpu.stat", cpuStatKeys[:], v[:]); err != nil {
			return err
		}
		st.CPUUsage = time.Duration(v[0]) * time.Microsecond
		st.CPUUser = time.Duration(v[1]) * time.Microsecond
		st.CPUSystem = time.Duration(v[2]) * time.Microsecond
		return nil
	}
	if m.cpuacct == "" {
		return unsupported("cpuacct controller not mounted")
	}
	usage, err := readInt(m.cpuacct + "/cpuacct.usage")
	if err != nil {
		return err
	}
	st.CPUUsage = time.Duration(usage)
	user, err := readInt(m.cpuacct + "/cpuacct.usage_user")
	if err == nil {
		sys, err := readInt(m.cpuacct + "/cpuacct.usage_sys")
		if err != nil {
			return err
		}
		st.CPUUser, st.CPUSystem = time.Duration(user), time.Duration(sys)
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Before Linux 4.7 (or so) only cpuacct.stat splits it, in ticks.
	var v [2]int64
	if _, err := readKeys(m.cpuacct+"/cpuacct.stat", cpuacctKeys[:], v[:]); err != nil {
		return err
	}
	st.CPUUser = time.Duration(v[0]) * (time.Second / userHZ)
	st.CPUSystem = time.Duration(v[1]) * (time.Second / userHZ)
	return nil
}

func (m *Manager) statMemory(st *Stats) error {
	if m.memory == "" || m.sys.lacks("memory") {
		return unsupported("memory controller not mounted")
	}
	peakFile, currentFile, eventsFile := "/memory.peak", "/memory.current", "/memory.events"
	if m.sys.mode == V1 {
		peakFile, currentFile, eventsFile = "/memory.max_usage_in_bytes", "/memory.usage_in_bytes", "/memory.oom_control"
	}
	peak, err := readInt(m.memory + peakFile)
	st.MemoryPeakExact = err == nil
	if errors.Is(err, fs.ErrNotExist) { // memory.peak is new in Linux 5.19
		peak, err = readInt(m.memory + currentFile)
	}
	if err != nil {
		return err
	}
	st.MemoryPeak = peak
	var v [1]int64
	found, err := readKeys(m.memory+eventsFile, oomKillKey[:], v[:])
	if err != nil {
		return err
	}
	st.OOMKills = v[0]
	if found == 0 && m.sys.mode == V1 {
		// oom_control has no oom_kill before Linux 4.13: say whether the
		// group ever hit its limit.
		failcnt, err := readInt(m.memory + "/memory.failcnt")
		if err != nil {
			return err
		}
		st.OOMKills = min(failcnt, 1)
	}
	return nil
}

func (m *Manager) statPids(st *Stats) error {
	if m.pids == "" || m.sys.lacks("pids") {
		return unsupported("pids controller not mounted")
	}
	cur, err := readInt(m.pids + "/pids.current")
	if err != nil {
		return err
	}
	st.PidsCurrent = cur
	peak, err := readInt(m.pids + "/pids.peak")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	st.PidsPeak = peak
	return nil
}

// killTimeout bounds how long Kill waits for the group to empty.
const killTimeout = 5 * time.Second

// Kill kills every process in the group with SIGKILL and waits, up to a few
// seconds, until no process is left in it (cgroup.procs is empty);
// processes that left their session or were orphaned (daemons) are in the
// group all the same. The dead stay zombies until their parent reaps them:
// the caller for its own children, init for orphans. The group can be
// deleted meanwhile, but pids.current counts them until then. Killing a
// group that is empty or gone returns nil.
//
// On v2 it writes cgroup.kill (Linux 5.14 and later), which the kernel
// applies atomically against forks. Otherwise it freezes the group
// (freezer.state on v1, cgroup.freeze on v2), so that none can fork while it
// lists them, sends each listed process SIGKILL, thaws the group and repeats
// until the group is empty.
func (m *Manager) Kill() error {
	if err := m.kill(time.Now().Add(killTimeout), true); err != nil {
		return &Error{Op: "kill", Path: m.path, Err: err}
	}
	return nil
}

// kill is Kill; killFile false makes it do without cgroup.kill, for tests.
func (m *Manager) kill(deadline time.Time, killFile bool) error {
	if m.sys.mode == V2 && killFile {
		err := writeFile(m.dirs[0]+"/cgroup.kill", one)
		if err == nil {
			return m.waitEmpty(deadline)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// No cgroup.kill before Linux 5.14; or no group, which the
		// loop below finds empty.
	}
	var pids []int
	for {
		var err error
		if pids, err = m.procs(pids[:0]); err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes left after %v", len(pids), killTimeout)
		}
		thaw, err := m.freeze(deadline)
		if err != nil {
			return err
		}
		if thaw != nil { // list again: none can fork now
			if pids, err = m.procs(pids[:0]); err != nil {
				thaw()
				return err
			}
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL) // ESRCH: it died already
		}
		if thaw != nil {
			if err := thaw(); err != nil {
				return err
			}
		}
		// Give them a moment to die, then look again.
		m.waitEmpty(earlier(deadline, time.Now().Add(50*time.Millisecond)))
	}
}

// procs appends the pids in the group (in any hierarchy, on v1) to pids.
// A group that does not exist has none.
func (m *Manager) procs(pids []int) ([]int, error) {
	for _, d := range m.dirs {
		var err error
		pids, err = readPids(d+"/cgroup.procs", pids)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return pids, err
		}
	}
	if len(m.dirs) > 1 {
		// The v1 hierarchies normally hold the same processes.
		slices.Sort(pids)
		pids = slices.Compact(pids)
	}
	return pids, nil
}

// freeze freezes the group, if the kernel can, and returns the function
// that thaws it; a nil function means that it cannot (v1 without the
// freezer hierarchy, v2 before Linux 5.2) and Kill does without.
func (m *Manager) freeze(deadline time.Time) (thaw func() error, err error) {
	var file, state string
	var frozen, thawed []byte
	if m.sys.mode == V2 {
		file, frozen, thawed = m.dirs[0]+"/cgroup.freeze", one, zero
	} else if m.freezer != "" {
		file, frozen, thawed, state = m.freezer+"/freezer.state", []byte("FROZEN"), []byte("THAWED"), "FROZEN"
	} else {
		return nil, nil
	}
	if err := writeFile(file, frozen); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	thaw = func() error { return writeFile(file, thawed) }
	// Wait until it is frozen, but not past the deadline nor long: a task
	// in uninterruptible sleep can hold it in FREEZING, and SIGKILL works
	// either way once the group thaws.
	limit := earlier(deadline, time.Now().Add(time.Second))
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		var done bool
		if state != "" {
			var buf [16]byte
			n, err := readFile(file, buf[:])
			if err != nil {
				thaw()
				return nil, err
			}
			done = string(bytes.TrimSpace(buf[:n])) == state
		} else {
			var v [1]int64
			if _, err := readKeys(m.dirs[0]+"/cgroup.events", frozenKey[:], v[:]); err != nil {
				thaw()
				return nil, err
			}
			done = v[0] == 1
		}
		if done || time.Now().After(limit) {
			return thaw, nil
		}
		time.Sleep(delay)
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

var (
	frozenKey    = [...]string{"frozen"}
	populatedKey = [...]string{"populated"}
)

// waitEmpty waits until the group holds no process, or returns an error at
// the deadline.
func (m *Manager) waitEmpty(deadline time.Time) error {
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		empty, err := m.empty()
		if err != nil || empty {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group not empty after %v", killTimeout)
		}
		time.Sleep(delay)
	}
}

func (m *Manager) empty() (bool, error) {
	if m.sys.mode == V2 {
		var v [1]int64
		found, err := readKeys(m.dirs[0]+"/cgroup.events", populatedKey[:], v[:])
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return found != 0 && v[0] == 0, err
	}
	var buf [16]byte
	for _, d := range m.dirs {
		n, err := readFile(d+"/cgroup.procs", buf[:])
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// deleteTimeout bounds how long Delete retries a group that is busy.
const deleteTimeout = 500 * time.Millisecond

// Delete removes the group (in every hierarchy, on v1). The group must be
// empty: call Kill first. It retries for a short while when the kernel says
// the group is busy, as it may just after its last process exited. Deleting
// a group that is gone returns nil.
func (m *Manager) Delete() error {
	// The group may have been a parent that New made ready: a group made
	// later under the same name is a new directory, without the
	// controllers enabled in the old one.
	_, wasParent := readyParents.LoadAndDelete(strings.TrimPrefix(m.path, "/"))
	var errs []error
	deadline := time.Now().Add(deleteTimeout)
	for i := len(m.dirs) - 1; i >= 0; i-- {
		if err := rmdirRetry(m.dirs[i], deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if wasParent {
		// New made the parent's directory in every hierarchy (makeParent),
		// also in those the parent itself is not in (on v1, cpu for a
		// parent without a CPU limit): they go with it.
		for _, root := range m.sys.roots {
			if d := root + m.path; !slices.Contains(m.dirs, d) {
				if err := rmdirRetry(d, deadline); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return &Error{Op: "delete", Path: m.path, Err: errors.Join(errs...)}
	}
	return nil
}

func rmdirRetry(dir string, deadline time.Time) error {
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 50*time.Millisecond) {
		err := rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		time.Sleep(delay)
	}
}

// rmdir removes the group's directories once each, for undoing New.
func (m *Manager) rmdir() {
	for i := len(m.dirs) - 1; i >= 0; i-- {
		rmdir(m.dirs[i])
	}
}

// Children returns the names of the group's child groups, in any of its
// hierarchies.
func (m *Manager) Children() ([]string, error) {
	seen := map[string]bool{}
	var names []string
	for _, d := range m.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, &Error{Op: "list children", Path: m.path, Err: err}
		}
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
}

// Files returns the files a process opens to join the group that New(cfg)
// makes, before it exists: its join file in each hierarchy (see JoinFiles)
// and, on v2, its directory (see OpenDir; "" on v1).
func Files(cfg Config) (join []string, dir string, err error) {
	group, _, err := cfg.groupPath()
	if err != nil {
		return nil, "", &Error{Op: "create", Path: "/" + strings.Trim(cfg.Parent, "/") + "/" + cfg.Name, Err: err}
	}
	s := detected()
	if s.mode == Unavailable {
		return nil, "", &Error{Op: "create", Path: "/" + group, Err: unsupported("no cgroup file system is mounted")}
	}
	m := s.manager(group, cfg.Resources.CPUs != nil, !cfg.NoFreezer)
	if s.mode == V2 {
		dir = m.dirs[0]
	}
	return m.JoinFiles(), dir, nil
}

// JoinFiles returns the files, one per hierarchy, through which a
// single-threaded process moves itself into the group by writing "0" to
// each, from descriptors opened beforehand: how a sandboxed command joins
// its group between fork and execve, without its parent joining too.
//
// On v2 they are cgroup.procs. On v1 they are the tasks files: moving the
// calling thread alone (pid 0 in tasks) is the one migration the kernel
// makes without taking its global lock on every thread group, whose writer
// side waits for an RCU grace period whenever no migration ran in the last
// few milliseconds (measured here: 0.6 to 7.5 ms for cgroup.procs against
// 0.01 to 0.09 ms for tasks). A process with one thread is all of itself;
// a multi-threaded one must write a pid to cgroup.procs instead (AddProc).
func (m *Manager) JoinFiles() []string {
	name := "/cgroup.procs"
	if m.sys.mode == V1 {
		name = "/tasks"
	}
	files := make([]string, len(m.dirs))
	for i, d := range m.dirs {
		files[i] = d + name
	}
	return files
}

// OpenJoinFiles opens the group's JoinFiles for writing, for a child to
// join the group by writing to them. The caller closes the files. A file
// that cannot be opened gives the *fs.PathError, and no file stays open.
func (m *Manager) OpenJoinFiles() ([]*os.File, error) {
	var files []*os.File
	for _, name := range m.JoinFiles() {
		f, err := openFile(name, unix.O_WRONLY)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// Set applies new limits to the group, as New applied its own.
func (m *Manager) Set(r Resources) error {
	if err := r.validate(); err != nil {
		return &Error{Op: "set limits", Path: m.path, Err: err}
	}
	return m.apply(r)
}
