package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process instead: see TestMain.
const helperEnv = "HUTCH_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

// helper runs in a child: it waits for a line on stdin (the test adds it to
// a group meanwhile), then does what mode says.
func helper(mode string) int {
	bufio.NewReader(os.Stdin).ReadString('\n')
	switch {
	case strings.HasPrefix(mode, "touch="):
		mib, _ := strconv.Atoi(strings.TrimPrefix(mode, "touch="))
		b, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		touch(b)
		fmt.Println("touched")
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// touch writes to every page of b. It is not instrumented by the race
// detector, whose shadow memory would be charged to the group too.
//
//go:norace
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}

// requireCgroups skips the test unless this process can create groups.
func requireCgroups(t testing.TB) {
	t.Helper()
	if err := Enabled(); err != nil {
		t.Skipf("needs cgroups that this process may create (root, writable cgroupfs): %v", err)
	}
}

// testParent returns a parent for the test's groups, unique to the test and
// this process, and removes it when the test ends, failing the test if a
// group is left in it.
func testParent(t testing.TB) string {
	t.Helper()
	top := fmt.Sprintf("hutch-test-%d", os.Getpid())
	parent := top + "/" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	t.Cleanup(func() {
		for _, root := range detected().roots {
			err := unix.Rmdir(root + "/" + parent)
			if err != nil && err != unix.ENOENT {
				t.Errorf("rmdir %s/%s: %v (a group is left in it?)", root, parent, err)
			}
			unix.Rmdir(root + "/" + top) // busy while other tests use it
		}
		readyParents.Delete(parent)
	})
	return parent
}

// children counts the directories in parent, in each hierarchy.
func children(t testing.TB, parent string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, root := range detected().roots {
		n[root] = 0
		ents, err := os.ReadDir(root + "/" + parent)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		for _, e := range ents {
			if e.IsDir() {
				n[root]++
			}
		}
	}
	return n
}

// counts is what children returns with n groups in the parent, of which
// cpu have a CPU limit (and so a directory in a v1 cpu hierarchy of its own).
func counts(n, cpu int) map[string]int {
	s := detected()
	m := map[string]int{}
	for _, root := range s.roots {
		m[root] = n
		if s.mode == V1 && root == s.cpu && !slices.Contains([]string{s.memory, s.pids, s.cpuacct, s.freezer}, root) {
			m[root] = cpu
		}
	}
	return m
}

// newGroup creates a group for the test and deletes it when the test ends.
func newGroup(t testing.TB, r Resources) *Manager {
	t.Helper()
	m, err := New(Config{Parent: testParent(t), Name: "g", Resources: r})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, m.Kill())
		assert.NoError(t, m.Delete())
	})
	return m
}

// gated is a command that waits for a line on stdin before it does
// anything, so that it can be put in a group first.
type gated struct {
	*exec.Cmd
	in     io.WriteCloser
	stdout *bufio.Reader
	waited chan error
}

// startGated starts the command and adds it to m.
func startGated(t *testing.T, m *Manager, cmd *exec.Cmd) *gated {
	t.Helper()
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	g := &gated{Cmd: cmd, in: in, stdout: bufio.NewReader(out), waited: make(chan error, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		g.wait(t)
	})
	require.NoError(t, m.AddProc(cmd.Process.Pid))
	return g
}

func (g *gated) release(t *testing.T) {
	t.Helper()
	_, err := io.WriteString(g.in, "go\n")
	require.NoError(t, err)
}

// wait waits for the command to exit, once, and returns what Wait did.
func (g *gated) wait(t *testing.T) error {
	select {
	case err := <-g.waited:
		g.waited <- err
		return err
	default:
	}
	g.in.Close()
	io.Copy(io.Discard, g.stdout) // Wait wants the pipe drained
	err := g.Cmd.Wait()
	g.waited <- err
	return err
}

func helperCmd(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	return cmd
}

// shell returns a command that runs script with sh, skipping the test if
// sh, or one of the other programs it needs, is missing.
func shell(t *testing.T, script string, needs ...string) *exec.Cmd {
	t.Helper()
	for _, p := range append([]string{"sh"}, needs...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Stderr = os.Stderr
	return cmd
}

func readFileString(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func TestDetectMode(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Skipf("no /sys/fs/cgroup: %v", err)
	}
	mode := DetectMode()
	assert.Equal(t, mode, DetectMode(), "cached")
	t.Logf("mode %v, hierarchies %v, missing %v", mode, detected().roots, detected().missing)
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		assert.Equal(t, V2, mode)
		return
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	if strings.Contains(string(mi), " - cgroup ") {
		assert.Equal(t, V1, mode)
		assert.NotEmpty(t, detected().memory, "memory hierarchy")
	} else {
		assert.Equal(t, Unavailable, mode)
	}
}

func TestUnescapeMount(t *testing.T) {
	assert.Equal(t, "/sys/fs/cgroup/cpu,cpuacct", unescapeMount("/sys/fs/cgroup/cpu,cpuacct"))
	assert.Equal(t, "/mnt/a b\\c", unescapeMount(`/mnt/a\040b\134c`))
	assert.Equal(t, `/mnt/a\04`, unescapeMount(`/mnt/a\04`))
}

func TestEnabled(t *testing.T) {
	err := Enabled()
	if err != nil {
		var ue *UnavailableError
		require.ErrorAs(t, err, &ue)
		t.Skipf("cgroups not usable here: %v", err)
	}
	assert.NotEqual(t, Unavailable, DetectMode())
	assert.Equal(t, 0, children(t, DefaultParent+"/.probe-does-not-exist")[detected().roots[0]])
}

func TestNewDelete(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	require.Equal(t, counts(0, 0), children(t, parent))

	m, err := New(Config{Parent: parent, Name: "run-1"})
	require.NoError(t, err)
	assert.Equal(t, DetectMode(), m.Mode())
	assert.Equal(t, "/"+parent+"/run-1", m.Path())
	assert.Equal(t, counts(1, 0), children(t, parent))
	for _, d := range m.dirs {
		assert.DirExists(t, d)
	}
	cpus := 1.0
	withCPU, err := New(Config{Parent: parent, Name: "run-cpu", Resources: Resources{CPUs: &cpus}})
	require.NoError(t, err)
	assert.Equal(t, counts(2, 1), children(t, parent))

	_, err = New(Config{Parent: parent, Name: "run-1"})
	assert.ErrorIs(t, err, fs.ErrExist, "a second group of the same name")
	assert.Equal(t, counts(2, 1), children(t, parent), "the failed New removed the first one")

	require.NoError(t, m.Delete())
	require.NoError(t, withCPU.Delete())
	assert.Equal(t, counts(0, 0), children(t, parent))
	assert.NoError(t, m.Delete(), "Delete again")
	assert.NoError(t, m.Kill(), "Kill after Delete")

	// With a parent that disappeared after this process made it.
	for _, root := range detected().roots {
		require.NoError(t, unix.Rmdir(root+"/"+parent))
	}
	m, err = New(Config{Parent: parent, Name: "run-2"})
	require.NoError(t, err)
	assert.Equal(t, counts(1, 0), children(t, parent))
	require.NoError(t, m.Delete())
}

// A group made without a freezer has no freezer directory on v1 (when the
// freezer has a hierarchy of its own); it can still be killed, and opened.
func TestNoFreezer(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	m, err := New(Config{Parent: parent, Name: "nf", NoFreezer: true})
	require.NoError(t, err)
	defer m.Delete()
	with, err := New(Config{Parent: parent, Name: "f"})
	require.NoError(t, err)
	defer with.Delete()
	s := detected()
	if s.mode == V1 && s.freezer != "" && !slices.Contains([]string{s.memory, s.pids, s.cpu, s.cpuacct}, s.freezer) {
		assert.NoDirExists(t, s.freezer+"/"+parent+"/nf")
		assert.DirExists(t, s.freezer+"/"+parent+"/f")
		assert.Empty(t, m.freezer)
		assert.Len(t, m.dirs, len(with.dirs)-1)
	} else {
		assert.Len(t, m.dirs, len(with.dirs))
	}
	for _, d := range m.dirs {
		assert.DirExists(t, d)
	}
	o, err := Open(Config{Parent: parent, Name: "nf"})
	require.NoError(t, err)
	assert.Equal(t, m.dirs, o.dirs)
	assert.Equal(t, m.freezer, o.freezer)

	g := startGated(t, m, shell(t, "read x; exec sleep 100", "sleep"))
	g.release(t)
	require.NoError(t, m.Kill())
	assert.ErrorContains(t, g.wait(t), "signal: killed")
	require.NoError(t, m.Delete())
}

// Files names, before New, what New then makes.
func TestFiles(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	for _, cfg := range []Config{{Parent: parent, Name: "a"}, {Parent: parent, Name: "b", NoFreezer: true}} {
		procs, dir, err := Files(cfg)
		require.NoError(t, err)
		m, err := New(cfg)
		require.NoError(t, err)
		assert.Equal(t, m.JoinFiles(), procs)
		if m.Mode() == V2 {
			assert.Equal(t, m.dirs[0], dir)
		} else {
			assert.Empty(t, dir)
		}
		require.NoError(t, m.Delete())
	}
	_, _, err := Files(Config{Parent: parent, Name: "bad/name"})
	assert.Error(t, err)
}

// A single-threaded process that writes "0" to each of JoinFiles is in the
// group, in every hierarchy, and so is what it starts afterwards.
func TestJoinFiles(t *testing.T) {
	half := 0.5
	requireCgroups(t)
	m, err := New(Config{Parent: testParent(t), Name: "join", Resources: Resources{CPUs: &half}})
	require.NoError(t, err)
	defer m.Delete()
	script := ""
	for _, f := range m.JoinFiles() {
		script += "echo 0 >" + f + " && "
	}
	out, err := exec.Command("/bin/sh", "-c", script+"echo $$ && cat /proc/self/cgroup").CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	joined := 0
	for _, l := range lines[1:] {
		if strings.HasSuffix(l, ":"+m.Path()) {
			joined++
		}
	}
	assert.Equal(t, len(m.dirs), joined, "the shell's child is in the group in each hierarchy:\n%s", out)
	if m.Mode() == V1 {
		for _, f := range m.JoinFiles() {
			assert.Equal(t, "tasks", filepath.Base(f), "v1 joins by thread")
		}
	}

	// OpenJoinFiles opens the same files, for writing; a group that is
	// gone gives the file's path error and nothing open.
	files, err := m.OpenJoinFiles()
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
		_, err := f.Stat()
		assert.NoError(t, err)
		f.Close()
	}
	assert.Equal(t, m.JoinFiles(), names)
	gone, err := New(Config{Parent: testParent(t), Name: "join-gone"})
	require.NoError(t, err)
	require.NoError(t, gone.Delete())
	_, err = gone.OpenJoinFiles()
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, gone.JoinFiles()[0], pe.Path)
}

// A parent deleted and made again under the same name is made ready again:
// on v2 its children need the controllers enabled in the new directory.
func TestParentRemadeUnderSameName(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	pids := int64(10)
	for range 2 {
		p, err := New(Config{Parent: parent, Name: "p"})
		require.NoError(t, err)
		c, err := New(Config{Parent: parent + "/p", Name: "c", Resources: Resources{Pids: &pids}})
		require.NoError(t, err, "a child with a pids limit under a parent made again")
		require.NoError(t, c.Delete())
		require.NoError(t, p.Delete())
	}
}

// A parent deleted after its children leaves no directory in any
// hierarchy, also where New made it only for a child (on v1, cpu for a
// child with a CPU limit under a parent without).
func TestParentDeleteLeavesNothing(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	cpus := 0.5
	p, err := New(Config{Parent: parent, Name: "p"})
	require.NoError(t, err)
	c, err := New(Config{Parent: parent + "/p", Name: "c", Resources: Resources{CPUs: &cpus}})
	require.NoError(t, err)
	require.NoError(t, c.Delete())
	require.NoError(t, p.Delete())
	for _, root := range p.sys.roots {
		assert.NoDirExists(t, root+p.Path())
	}
}

func TestNewDefaultParent(t *testing.T) {
	requireCgroups(t)
	m, err := New(Config{Name: fmt.Sprintf("test-%d", os.Getpid())})
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("/hutch/test-%d", os.Getpid()), m.Path())
	assert.DirExists(t, m.dirs[0])
	require.NoError(t, m.Delete())
	assert.NoDirExists(t, m.dirs[0])
}

func TestNewBad(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	i := func(v int64) *int64 { return &v }
	for _, cfg := range []Config{
		{Parent: parent, Name: ""},
		{Parent: parent, Name: "a/b"},
		{Parent: parent, Name: ".."},
		{Parent: parent, Name: "."},
		{Parent: parent + "/../x", Name: "a"},
		{Parent: parent, Name: "a", Resources: Resources{Memory: i(-1)}},
		{Parent: parent, Name: "a", Resources: Resources{Pids: i(0)}},
	} {
		m, err := New(cfg)
		assert.Nil(t, m)
		var e *Error
		if assert.ErrorAs(t, err, &e, "%+v", cfg) {
			assert.Equal(t, "create", e.Op)
		}
		assert.Equal(t, counts(0, 0), children(t, parent), "%+v", cfg)
		for _, root := range detected().roots {
			assert.NoDirExists(t, root+"/"+parent, "parent made for %+v", cfg)
		}
	}
}

func TestNewRollback(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	// Someone else's group of the same name, in the last hierarchy only
	// (on v1; on v2 there is only one).
	roots := detected().roots
	last := roots[len(roots)-1] + "/" + parent
	require.NoError(t, os.MkdirAll(last+"/a", 0o755))
	defer unix.Rmdir(last + "/a")

	m, err := New(Config{Parent: parent, Name: "a"})
	require.ErrorIs(t, err, fs.ErrExist)
	assert.Nil(t, m)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "create", e.Op)
	assert.DirExists(t, last+"/a", "the group New did not make")
	for _, root := range roots[:len(roots)-1] {
		assert.NoDirExists(t, root+"/"+parent, "New made the parent and must remove it")
	}
}

func TestLimits(t *testing.T) {
	requireCgroups(t)
	i := func(v int64) *int64 { return &v }
	f := func(v float64) *float64 { return &v }
	v2 := DetectMode() == V2
	for _, tc := range []struct {
		name string
		r    Resources
		// file (relative to the controller's directory) -> content; a
		// file missing from the group is skipped where optional.
		want     map[string]string
		optional map[string]bool
	}{
		{"none", Resources{}, map[string]string{}, nil},
		{"memory", Resources{Memory: i(64 << 20)},
			map[string]string{"memory.max": "67108864", "memory.swap.max": "0",
				"memory.limit_in_bytes": "67108864", "memory.memsw.limit_in_bytes": "67108864"},
			map[string]bool{"memory.swap.max": true, "memory.memsw.limit_in_bytes": true}},
		{"pids", Resources{Pids: i(7)}, map[string]string{"pids.max": "7"}, nil},
		{"half a CPU", Resources{CPUs: f(0.5)},
			map[string]string{"cpu.max": "50000 100000", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"}, nil},
		{"two CPUs", Resources{CPUs: f(2)},
			map[string]string{"cpu.max": "200000 100000", "cpu.cfs_quota_us": "200000", "cpu.cfs_period_us": "100000"}, nil},
		{"all", Resources{Memory: i(1 << 30), Pids: i(100), CPUs: f(1)},
			map[string]string{"memory.max": "1073741824", "memory.limit_in_bytes": "1073741824",
				"pids.max": "100", "cpu.max": "100000 100000", "cpu.cfs_quota_us": "100000"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newGroup(t, tc.r)
			for file, want := range tc.want {
				if strings.HasPrefix(file, "memory.") && (file == "memory.max" || file == "memory.swap.max") != v2 ||
					strings.HasPrefix(file, "cpu.") && (file == "cpu.max") != v2 {
					continue // the other version's file
				}
				dir := map[string]string{"memory": m.memory, "pids": m.pids, "cpu": m.cpu}[strings.Split(file, ".")[0]]
				path := filepath.Join(dir, file)
				if _, err := os.Stat(path); tc.optional[file] && errors.Is(err, fs.ErrNotExist) {
					t.Logf("%s: no such file on this kernel", file)
					continue
				}
				assert.Equal(t, want, readFileString(t, path), file)
			}
			if tc.r.Memory == nil && v2 {
				assert.Equal(t, "max", readFileString(t, m.memory+"/memory.max"))
			}
			if tc.r.Pids == nil {
				assert.Equal(t, "max", readFileString(t, m.pids+"/pids.max"))
			}
		})
	}
}

func TestCPUUsage(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	u, err := m.CPUUsage()
	require.NoError(t, err)
	assert.Zero(t, u)
	// A counter opened now reads what the file says at each Read.
	c, err := m.OpenCPUCounter()
	require.NoError(t, err)
	defer c.Close()
	cu, err := c.Read()
	require.NoError(t, err)
	assert.Zero(t, cu)

	g := startGated(t, m, shell(t, "read x; while :; do :; done"))
	before := schedTime(t, g.Process.Pid) // CPU time spent before it joined
	g.release(t)
	const burn = 200 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for u < burn && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		u, err = m.CPUUsage()
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, u, burn)
	cu, err = c.Read()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cu, u, "the counter read after CPUUsage")
	require.NoError(t, m.Kill())
	g.wait(t)
	u, err = m.CPUUsage()
	require.NoError(t, err)
	cu, err = c.Read()
	require.NoError(t, err)
	assert.Equal(t, u, cu, "the counter and CPUUsage, once the group is empty")
	rusage := g.ProcessState.SysUsage().(*syscall.Rusage)
	total := time.Duration(rusage.Utime.Nano() + rusage.Stime.Nano())

	st, err := m.Stat(StatCPU)
	require.NoError(t, err)
	t.Logf("group %v (user %v, system %v); process %v, %v of it before joining", st.CPUUsage, st.CPUUser, st.CPUSystem, total, before)
	assert.InDelta(t, float64(total-before), float64(st.CPUUsage), float64(20*time.Millisecond), "group usage vs the process's own")
	// The kernel splits user and system time by sampling at its ticks.
	assert.InDelta(t, float64(st.CPUUsage), float64(st.CPUUser+st.CPUSystem), float64(st.CPUUsage/3+50*time.Millisecond), "user+system vs usage")
	assert.Greater(t, st.CPUUser, st.CPUSystem, "a busy loop runs in user mode")
	assert.Zero(t, st.MemoryPeak, "not asked for")
	assert.Zero(t, st.PidsCurrent, "not asked for")
}

// schedTime returns the CPU time the process used so far.
func schedTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0 // no CONFIG_SCHEDSTATS: close enough for a shell blocked in read
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	require.NoError(t, err)
	return time.Duration(ns)
}

func TestCPULimit(t *testing.T) {
	requireCgroups(t)
	cpus := 0.2
	m := newGroup(t, Resources{CPUs: &cpus})
	g := startGated(t, m, shell(t, "read x; while :; do :; done"))
	g.release(t)
	const wall = 500 * time.Millisecond
	time.Sleep(wall)
	u, err := m.CPUUsage()
	require.NoError(t, err)
	// 0.2 CPUs for 500ms is 100ms, plus at most a period of slack.
	t.Logf("used %v in %v at %v CPUs", u, wall, cpus)
	assert.Less(t, u, 220*time.Millisecond)
	assert.Greater(t, u, 20*time.Millisecond)
}

func TestMemoryPeak(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	g := startGated(t, m, helperCmd("touch=64"))
	g.release(t)
	line, err := g.stdout.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "touched\n", line)
	require.NoError(t, g.wait(t))

	st, err := m.Stat(StatMemory)
	require.NoError(t, err)
	t.Logf("peak %d MiB (exact %v), OOM kills %d", st.MemoryPeak>>20, st.MemoryPeakExact, st.OOMKills)
	assert.True(t, st.MemoryPeakExact, "memory.peak or memory.max_usage_in_bytes")
	assert.GreaterOrEqual(t, st.MemoryPeak, int64(64<<20))
	assert.Less(t, st.MemoryPeak, int64(96<<20))
	assert.Zero(t, st.OOMKills)
	assert.Zero(t, st.CPUUsage, "not asked for")
}

func TestOOMKill(t *testing.T) {
	requireCgroups(t)
	limit := int64(32 << 20)
	m := newGroup(t, Resources{Memory: &limit})
	g := startGated(t, m, helperCmd("touch=64"))
	g.release(t)
	err := g.wait(t)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the helper should have been killed")
	ws := ee.Sys().(syscall.WaitStatus)
	assert.Equal(t, syscall.SIGKILL, ws.Signal(), "killed by the OOM killer: %v", err)

	st, err := m.Stat(StatAll)
	require.NoError(t, err)
	t.Logf("%+v", *st)
	assert.GreaterOrEqual(t, st.OOMKills, int64(1))
	assert.LessOrEqual(t, st.MemoryPeak, limit+1<<20, "the peak respects the limit")
	assert.Zero(t, st.PidsCurrent)
}

func TestPidsLimit(t *testing.T) {
	requireCgroups(t)
	limit := int64(5)
	m := newGroup(t, Resources{Pids: &limit})
	// Each sleep is a task; forks beyond the limit fail with EAGAIN
	// (and the shell may give up).
	cmd := shell(t, "read x; i=0; while [ $i -lt 20 ]; do sleep 10 & i=$((i+1)); done; echo spawned; read y", "sleep")
	cmd.Stderr = nil // "cannot fork"
	g := startGated(t, m, cmd)
	g.release(t)
	var denied int64
	deadline := time.Now().Add(3 * time.Second)
	for denied == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		var v [1]int64
		_, err := readKeys(m.pids+"/pids.events", []string{"max"}, v[:])
		require.NoError(t, err)
		denied = v[0]
	}
	st, err := m.Stat(StatPids)
	require.NoError(t, err)
	t.Logf("%d forks denied; %+v", denied, *st)
	assert.Positive(t, denied, "pids.events max: forks refused")
	assert.LessOrEqual(t, st.PidsCurrent, limit)
	assert.Positive(t, st.PidsCurrent)
	if st.PidsPeak != 0 { // pids.peak is new
		assert.Equal(t, limit, st.PidsPeak)
	}
	require.NoError(t, m.Kill())
	empty, err := m.empty()
	require.NoError(t, err)
	assert.True(t, empty)
	// pids.current counts the killed tasks until they are reaped: the
	// shell by this process, the orphans by init, when it gets to it.
}

func TestKillDaemon(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	// The subshell forks a sleep and exits: the sleep is orphaned, in a
	// session of its own, and no child of this process.
	cmd := shell(t, "read x; (sleep 100 &); exec sleep 100", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	g := startGated(t, m, cmd)
	g.release(t)
	var pids []int
	deadline := time.Now().Add(3 * time.Second)
	for len(pids) != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		var err error
		pids, err = m.procs(nil)
		require.NoError(t, err)
	}
	require.Len(t, pids, 2, "the shell's sleep and the orphan")
	orphan := pids[0]
	if orphan == g.Process.Pid {
		orphan = pids[1]
	}

	start := time.Now()
	require.NoError(t, m.Kill())
	t.Logf("Kill took %v", time.Since(start))
	pids, err := m.procs(nil)
	require.NoError(t, err)
	assert.Empty(t, pids)
	empty, err := m.empty()
	require.NoError(t, err)
	assert.True(t, empty)
	assert.True(t, dead(orphan), "the orphan %d", orphan)
	err = g.wait(t)
	assert.ErrorContains(t, err, "signal: killed")

	assert.NoError(t, m.Kill(), "Kill an empty group")
	require.NoError(t, m.Delete())
}

// dead reports whether pid is gone or a zombie.
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func TestKillForking(t *testing.T) {
	requireCgroups(t)
	for _, tc := range []struct {
		name     string
		killFile bool
	}{
		// On v1 both are the freezer's way; on v2 the first is cgroup.kill,
		// the second the way of kernels before 5.14.
		{"Kill", true},
		{"freeze and kill", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pids := int64(300)
			m := newGroup(t, Resources{Pids: &pids})
			cmd := shell(t, "read x; while :; do sleep 1 & done", "sleep")
			cmd.Stderr = nil // "cannot fork"
			g := startGated(t, m, cmd)
			g.release(t)
			time.Sleep(100 * time.Millisecond)
			st, err := m.Stat(StatPids)
			require.NoError(t, err)
			start := time.Now()
			require.NoError(t, m.kill(start.Add(killTimeout), tc.killFile))
			t.Logf("killed %d tasks in %v", st.PidsCurrent, time.Since(start))
			empty, err := m.empty()
			require.NoError(t, err)
			assert.True(t, empty)
			// Killed, or gone already for want of pids ("cannot fork").
			assert.Error(t, g.wait(t))
			if m.freezer != "" {
				state := "0"
				if m.Mode() == V1 {
					state = "THAWED"
				}
				assert.Equal(t, state, readFileString(t, filepath.Join(m.freezer, map[Mode]string{V1: "freezer.state", V2: "cgroup.freeze"}[m.Mode()])), "thawed")
			}
			require.NoError(t, m.Delete())
		})
	}
}

func TestDeleteBusy(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	g := startGated(t, m, shell(t, "read x"))
	err := m.Delete()
	require.ErrorIs(t, err, unix.EBUSY, "a group with a process in it")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "delete", e.Op)
	g.release(t)
	require.NoError(t, g.wait(t))
	require.NoError(t, m.Delete())
	require.NoError(t, m.Delete())
}

func TestAddProcBad(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	assert.Error(t, m.AddProc(0))
	assert.Error(t, m.AddProc(-1))
	err := m.AddProc(1 << 30) // no such process
	assert.ErrorIs(t, err, unix.ESRCH)
}

func TestOpen(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	_, err := Open(Config{Parent: parent, Name: "x"})
	require.ErrorIs(t, err, fs.ErrNotExist)

	cpus := 1.0
	m, err := New(Config{Parent: parent, Name: "x", Resources: Resources{CPUs: &cpus}})
	require.NoError(t, err)
	g := startGated(t, m, shell(t, "read x"))
	o, err := Open(Config{Parent: parent, Name: "x"})
	require.NoError(t, err)
	assert.Equal(t, m.Path(), o.Path())
	assert.Equal(t, m.dirs, o.dirs)
	assert.Equal(t, m.cpu, o.cpu)
	require.NoError(t, o.Kill())
	require.NoError(t, o.Delete())
	assert.Error(t, g.wait(t))
	assert.Equal(t, counts(0, 0), children(t, parent))
}

func TestOpenDir(t *testing.T) {
	requireCgroups(t)
	m := newGroup(t, Resources{})
	f, err := m.OpenDir()
	if DetectMode() != V2 {
		require.ErrorIs(t, err, errors.ErrUnsupported)
		t.Skip("CLONE_INTO_CGROUP needs cgroup v2")
	}
	require.NoError(t, err)
	defer f.Close()
	cmd := shell(t, "read x || :")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	pids, err := m.procs(nil)
	require.NoError(t, err)
	assert.Equal(t, []int{cmd.Process.Pid}, pids)
	in.Close()
	require.NoError(t, cmd.Wait())
}

func TestConcurrentNewDelete(t *testing.T) {
	requireCgroups(t)
	parent := testParent(t)
	mem := int64(64 << 20)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				m, err := New(Config{Parent: parent, Name: fmt.Sprintf("w%d-%d", w, i), Resources: Resources{Memory: &mem}})
				if err != nil {
					errs <- err
					return
				}
				if _, err := m.Stat(StatAll); err != nil {
					errs <- err
				}
				if err := m.Delete(); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, counts(0, 0), children(t, parent))
}

func BenchmarkNewDelete(b *testing.B) {
	requireCgroups(b)
	parent := testParent(b)
	mem, pids, cpus := int64(256<<20), int64(64), 1.0
	for _, bc := range []struct {
		name string
		r    Resources
	}{
		{"bare", Resources{}},
		{"limits", Resources{Memory: &mem, Pids: &pids, CPUs: &cpus}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m, err := New(Config{Parent: parent, Name: strconv.Itoa(i), Resources: bc.r})
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Delete(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchGroup makes a group for a benchmark, removed when it ends.
func benchGroup(b *testing.B) *Manager {
	b.Helper()
	requireCgroups(b)
	m, err := New(Config{Parent: testParent(b), Name: "g"})
	require.NoError(b, err)
	b.Cleanup(func() { m.Delete() })
	return m
}

func BenchmarkCPUUsage(b *testing.B) {
	m := benchGroup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.CPUUsage(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCPUCounter(b *testing.B) {
	m := benchGroup(b)
	c, err := m.OpenCPUCounter()
	require.NoError(b, err)
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Read(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStat(b *testing.B) {
	m := benchGroup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Stat(StatAll); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddProc moves one process back and forth between two groups.
func BenchmarkAddProc(b *testing.B) {
	requireCgroups(b)
	parent := testParent(b)
	var ms [2]*Manager
	for i := range ms {
		m, err := New(Config{Parent: parent, Name: strconv.Itoa(i)})
		require.NoError(b, err)
		defer m.Delete()
		defer m.Kill()
		ms[i] = m
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		b.Skipf("needs sleep: %v", err)
	}
	defer cmd.Wait()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := ms[i%2].AddProc(cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
	}
}

// Paths below a hierarchy's root resolve from a descriptor of the root
// the process holds; the root itself, a sibling whose name starts alike
// and any other path resolve as they are.
func TestAt(t *testing.T) {
	s := detected()
	if s.mode == Unavailable {
		t.Skip("no cgroup file system")
	}
	r := s.roots[len(s.roots)-1]
	fd, rel := at(r + "/hutch/run-1/tasks")
	require.NotEqual(t, unix.AT_FDCWD, fd)
	assert.Equal(t, "hutch/run-1/tasks", rel)
	var st, want unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	require.NoError(t, unix.Stat(r, &want))
	assert.Equal(t, want.Ino, st.Ino, "the descriptor is the root's")
	assert.Equal(t, want.Dev, st.Dev)
	for _, p := range []string{r, r + "/", r + "x/tasks", "/proc/self/cgroup", "relative/" + r} {
		fd, rel := at(p)
		assert.Equal(t, unix.AT_FDCWD, fd, p)
		assert.Equal(t, p, rel)
	}
}
