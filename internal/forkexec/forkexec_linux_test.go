package forkexec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/seccomp"
)

func TestCloseRanges(t *testing.T) {
	tests := []struct {
		keep []int
		want [][2]uintptr
	}{
		{nil, [][2]uintptr{{0, 0xffffffff}}},
		{[]int{3}, [][2]uintptr{{0, 2}, {4, 0xffffffff}}},
		{[]int{5, 3, 4, 4, 9}, [][2]uintptr{{0, 2}, {6, 8}, {10, 0xffffffff}}},
		{[]int{0, 1, 2}, [][2]uintptr{{3, 0xffffffff}}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, closeRanges(tt.keep), "keep %v", tt.keep)
	}
}

func TestStepError(t *testing.T) {
	e := &StepError{Stage: "mount overlay", Path: "/x", Err: syscall.ENOENT}
	assert.Equal(t, "mount overlay /x: no such file or directory", e.Error())
	assert.ErrorIs(t, e, fs.ErrNotExist)
	p := &Process{steps: []Step{Mkdir("create dir", "/a", 0o755)}}
	var se *StepError
	require.ErrorAs(t, p.stepError(0, syscall.EACCES), &se)
	assert.Equal(t, "create dir", se.Stage)
	require.ErrorAs(t, p.stepError(stageExecve, syscall.ENOENT), &se)
	assert.Equal(t, "execve", se.Stage)
}

func TestStartErrors(t *testing.T) {
	_, err := Start(&Config{})
	assert.Error(t, err, "no command")
	_, err = Start(&Config{Pause: true, Socket: &SocketSpec{}})
	assert.Error(t, err)
	_, err = Start(&Config{DropCapabilities: dropCaps, Argv: []string{"x"}, Path: []string{"/x"}, Steps: []Step{Chdir("bad", "a\x00b")}})
	assert.Error(t, err, "NUL in a path")
}

// dropCaps is what the tests' commands ask of their capabilities: none
// left, as a sandbox's, where the caller has them to drop (root).
var dropCaps = os.Geteuid() == 0

// stdio returns /dev/null three times.
func stdio(t testing.TB) [3]*os.File {
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return [3]*os.File{f, f, f}
}

func TestRunWithoutNamespaces(t *testing.T) {
	// No namespaces: only the mechanics of clone, release, steps, exec
	// and the report.
	dir := t.TempDir()
	p, err := Start(&Config{DropCapabilities: dropCaps,
		Steps: []Step{Mkdir("make dir", dir+"/made", 0o700), Chdir("chdir", dir+"/made")},
		Path:  []string{"/no/such", "/bin/sh"},
		Argv:  []string{"sh", "-c", "test $(pwd) = " + dir + "/made && exit 7"},
		Stdio: stdio(t),
	})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	ex, err := p.Wait()
	require.NoError(t, err)
	require.True(t, ex.Reported)
	assert.Equal(t, 7, ex.Status.ExitStatus())
	fi, err := os.Stat(dir + "/made")
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), "modes are exact (umask 0)")
}

func TestFailingStep(t *testing.T) {
	p, err := Start(&Config{DropCapabilities: dropCaps,
		Steps: []Step{Chdir("enter", "/no/such/dir")},
		Path:  []string{"/bin/true"},
		Argv:  []string{"true"},
		Stdio: stdio(t),
	})
	require.NoError(t, err)
	err = p.Release(context.Background())
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "enter", se.Stage)
	assert.Equal(t, "/no/such/dir", se.Path)
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}

func TestMissingCommand(t *testing.T) {
	p, err := Start(&Config{DropCapabilities: dropCaps, Path: []string{"/no/such", "/also/not"}, Argv: []string{"x"}, Stdio: stdio(t)})
	require.NoError(t, err)
	err = p.Release(context.Background())
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "execve", se.Stage)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestKillBeforeRelease(t *testing.T) {
	p, err := Start(&Config{DropCapabilities: dropCaps, Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)})
	require.NoError(t, err)
	require.NoError(t, p.Kill())
	p.Close()
	assert.NoError(t, p.Kill(), "killing a reaped process is a no-op")
}

// A child must outlive the thread that asked for it: a goroutine locked
// to its thread that exits takes the thread with it, and a parent-death
// signal tied to that thread would kill the child.
func TestChildOutlivesCallerThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	started := make(chan *Process, 1)
	var start func()
	start = func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		if unix.Gettid() == os.Getpid() {
			go start() // the main thread never ends: try another
			return
		}
		// A new PID namespace: the command dies with its init.
		p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWPID, Path: []string{"/bin/sh"},
			Argv: []string{"sh", "-c", "sleep 0.3; echo alive"}, Stdio: [3]*os.File{stdio(t)[0], w, w}})
		if err == nil {
			err = p.Release(context.Background())
		}
		if err != nil {
			t.Error(err)
			close(started)
			return
		}
		started <- p
	}
	go start()
	p, ok := <-started
	require.True(t, ok)
	w.Close()
	ex, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, ex.Reported, "init was killed: %v", ex.InitStatus)
	assert.Equal(t, 0, ex.Status.ExitStatus())
	out, _ := io.ReadAll(r)
	assert.Equal(t, "alive\n", string(out))
}

// On cgroup v2 the command is born in its cgroup (clone3's
// CLONE_INTO_CGROUP): given only the directory, it is there.
func TestBornInCgroup(t *testing.T) {
	if cgroup.DetectMode() != cgroup.V2 {
		t.Skip("needs cgroup v2")
	}
	if err := cgroup.Enabled(); err != nil {
		t.Skipf("needs cgroups: %v", err)
	}
	cg := newTestGroup(t, cgroup.Config{Parent: testParent(), Name: "born"})
	dir, err := cg.OpenDir()
	require.NoError(t, err)
	defer dir.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	p, err := Start(&Config{DropCapabilities: dropCaps, Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", "cat /proc/self/cgroup"},
		Stdio: [3]*os.File{stdio(t)[0], w, w}, CgroupDir: dir})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	w.Close()
	_, err = p.Wait()
	require.NoError(t, err)
	out, _ := io.ReadAll(r)
	assert.Equal(t, "0::"+cg.Path()+"\n", string(out))
}

// A working directory outside the root is refused: after pivot_root, a
// working directory that was not the old root itself stays where it was,
// outside the new one (the shape of CVE-2024-21626).
func TestCheckCwd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	for _, back := range []bool{false, true} {
		root := t.TempDir()
		steps := []Step{
			Mount("private", "", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""),
			Mount("tmpfs", "tmpfs", root, "tmpfs", 0, ""),
			Mkdir("old", root+"/old", 0o700),
			Chdir("leave", "/tmp"),
			PivotRoot("pivot", root, root+"/old"),
			Umount("detach", "/old", unix.MNT_DETACH),
		}
		if back {
			steps = append(steps, Chdir("enter", "/"))
		}
		steps = append(steps, CheckCwd("check"))
		p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWNS, Steps: steps,
			Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)})
		require.NoError(t, err)
		err = p.Release(context.Background())
		var se *StepError
		require.ErrorAs(t, err, &se)
		if back {
			assert.Equal(t, "execve", se.Stage, "inside the root the check passes (the empty root has no /bin/true)")
		} else {
			assert.Equal(t, "check", se.Stage)
		}
	}
}

// testParent is the parent of this test process's groups, of its own so
// that the tests can remove it (see newTestGroup).
func testParent() string { return fmt.Sprintf("hutch-test-forkexec-%d", os.Getpid()) }

// newTestGroup makes a group, and removes it and its parent (when no other
// test of this process uses it) once the test ends.
func newTestGroup(t *testing.T, cfg cgroup.Config) *cgroup.Manager {
	t.Helper()
	cg, err := cgroup.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, cg.Delete())
		// The parent is in every hierarchy, the group maybe not.
		for _, pattern := range []string{"/sys/fs/cgroup/", "/sys/fs/cgroup/*/"} {
			dirs, _ := filepath.Glob(pattern + cfg.Parent)
			for _, d := range dirs {
				unix.Rmdir(d) // busy while another test uses it
			}
		}
	})
	return cg
}

// The child opens the command's cgroup files itself, after a go-ahead
// given once the group exists: the group is made while it sets up.
func TestCgroupSlots(t *testing.T) {
	if err := cgroup.Enabled(); err != nil {
		t.Skipf("needs cgroups: %v", err)
	}
	cfg := cgroup.Config{Parent: testParent(), Name: "slots", NoFreezer: true}
	procs, dir, err := cgroup.Files(cfg)
	require.NoError(t, err)
	steps := []Step{Mkdir("a step before", t.TempDir()+"/x", 0o755), WaitParent("wait for the cgroup")}
	var procSlots, dirSlots []int
	for i, p := range procs {
		steps = append(steps, OpenSlot("open cgroup", p, unix.O_WRONLY, i))
		procSlots = append(procSlots, i)
	}
	if dir != "" {
		steps = append(steps, OpenSlot("open cgroup", dir, unix.O_RDONLY|unix.O_DIRECTORY, len(procs)))
		dirSlots = []int{len(procs)}
	}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	p, err := Start(&Config{DropCapabilities: dropCaps, Steps: steps, Immediate: true, CgroupProcsSlots: procSlots, CgroupDirSlots: dirSlots,
		Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", "cat /proc/self/cgroup"}, Stdio: [3]*os.File{stdio(t)[0], w, w}})
	require.NoError(t, err)
	cg := newTestGroup(t, cfg)
	require.NoError(t, p.Release(context.Background()))
	w.Close()
	_, err = p.Wait()
	require.NoError(t, err)
	out, _ := io.ReadAll(r)
	assert.Contains(t, string(out), cg.Path()+"\n")
	assert.NotContains(t, string(out), "freezer:"+cg.Path())

	// A child whose parent gives up before the go-ahead just ends.
	p, err = Start(&Config{DropCapabilities: dropCaps, Steps: []Step{WaitParent("wait")}, Immediate: true, Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)})
	require.NoError(t, err)
	p.Close()
}

// A step that fails before a WaitParent step is reported as itself, even
// when the parent's go-ahead finds the child gone.
func TestFailBeforeWaitParent(t *testing.T) {
	for range 20 {
		p, err := Start(&Config{DropCapabilities: dropCaps, Steps: []Step{Chdir("enter", "/no/such/dir"), WaitParent("wait")}, Immediate: true,
			Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)})
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // let it fail first, most times
		err = p.Release(context.Background())
		var se *StepError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "enter", se.Stage)
	}
}

// Wait reaps init through its pidfd, and gives its real wait status: an
// exit after its report, or the signal that killed it.
func TestInitStatus(t *testing.T) {
	p, err := Start(&Config{DropCapabilities: dropCaps, Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	ex, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, ex.Reported)
	assert.True(t, ex.InitStatus.Exited() && ex.InitStatus.ExitStatus() == 0, "init: %v", ex.InitStatus)
	assert.True(t, p.Reaped())

	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace (the command dies with init)")
	}
	p, err = Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWPID, Path: []string{"/bin/sleep"}, Argv: []string{"sleep", "100"}, Stdio: stdio(t)})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	time.Sleep(10 * time.Millisecond) // init waits in wait4 by now, most times
	require.NoError(t, p.Kill())
	ex, err = p.Wait()
	require.NoError(t, err)
	assert.False(t, ex.Reported)
	assert.True(t, ex.InitStatus.Signaled() && ex.InitStatus.Signal() == syscall.SIGKILL, "init: %v", ex.InitStatus)
	// Nothing of it is left to wait for.
	_, err = syscall.Wait4(p.Pid, nil, syscall.WNOHANG, nil)
	assert.ErrorIs(t, err, syscall.ECHILD)
}

// A reusable child serves command after command while each leaves its
// writable filesystem as the setup did: what a command left running is
// killed, the next command is PID 2 again, and a command that leaves a
// file ends the child.
// startReusable starts and releases a reusable child whose sandbox has
// its own /proc and a tmpfs at dir, its writable filesystem.
// adjust, if given, changes the configuration first.
func startReusable(t *testing.T, dir string, adjust ...func(*Config)) *Process {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for PID and mount namespaces")
	}
	cfg := &Config{DropCapabilities: dropCaps,
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC,
		Steps: []Step{
			Mount("make / private", "", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""),
			Mount("mount tmpfs", "tmpfs", dir, "tmpfs", 0, "size=1m"),
			Mkdir("make proc dir", dir+"/proc", 0o755),
			Mount("mount proc", "proc", dir+"/proc", "proc", 0, ""),
			OpenSlot("open ns_last_pid", dir+"/proc/sys/kernel/ns_last_pid", unix.O_WRONLY, 0),
			OpenSlot("open tmpfs", dir, unix.O_RDONLY|unix.O_DIRECTORY, 1),
		},
		Deferred:      true,
		Reusable:      true,
		LastPidSlot:   0,
		WritableSlots: []int{1},
		Stdio:         stdio(t),
	}
	for _, f := range adjust {
		f(cfg)
	}
	p, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	require.NoError(t, p.Release(context.Background()))
	return p
}

func TestReusable(t *testing.T) {
	dir := t.TempDir()
	p := startReusable(t, dir)
	run := func(script string) (*Exit, string) {
		t.Helper()
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		null := stdio(t)[0]
		err = p.Run(context.Background(), &Command{Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", script}, Stdio: [3]*os.File{null, w, w}})
		w.Close()
		require.NoError(t, err)
		out, err := io.ReadAll(r)
		require.NoError(t, err)
		ex, err := p.Wait()
		require.NoError(t, err)
		return ex, string(out)
	}
	// Each prints its PID, its first child's and the processes it sees,
	// and leaves something behind. (The sandbox's tests check the IPC
	// namespaces: TestPoolRunsHaveTheirOwnIPC.)
	probe := "echo $$ $(sh -c 'echo $$'); cd " + dir + "/proc; echo [0-9]*; "
	for i, leave := range []string{"sleep 100 &", "sleep 100 & sleep 100 &", "mkdir " + dir + "/d; rmdir " + dir + "/d"} {
		ex, out := run(probe + leave)
		require.True(t, ex.Reported)
		assert.True(t, ex.Reusable, "run %d: %s", i, out)
		lines := strings.Split(out, "\n")
		require.Len(t, lines, 3, "run %d: %q", i, out)
		assert.Equal(t, "2 3", lines[0], "run %d", i)
		assert.Equal(t, "1 2", lines[1], "run %d: a process left by the run before", i)
	}
	ex, _ := run("echo x > " + dir + "/f")
	assert.True(t, ex.Reported)
	assert.False(t, ex.Reusable, "a file was left")
	assert.True(t, p.Reaped(), "init exits once its sandbox is not clean")
	assert.Error(t, p.Run(context.Background(), &Command{Path: []string{"/bin/true"}, Argv: []string{"true"}, Stdio: stdio(t)}))
}

// A reusable child's init, once set up, and its commands until their own
// filter is in place, make only ReusableSyscalls: under an InitSeccomp
// filter that kills the process at any other call, init serves command
// after command, each with a bind and an rlimit of its own, and each
// command installs its own filter and gets through its execve (allowed
// too) to the exit_group that is all its program does.
func TestReusableSyscalls(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test's program is x86-64 code")
	}
	p := &seccomp.Policy{DefaultAction: seccomp.KillProcess}
	prog, err := p.Allow(ReusableSyscalls...).Allow("execve").Program()
	require.NoError(t, err)
	own, err := (&seccomp.Policy{DefaultAction: seccomp.Allow}).Program() // each command's, on top
	require.NoError(t, err)
	exit42 := filepath.Join(t.TempDir(), "exit42")
	require.NoError(t, os.WriteFile(exit42, exitELF(42), 0o755))
	dir := t.TempDir()
	child := startReusable(t, dir, func(c *Config) {
		c.InitSeccomp, c.Seccomp = &prog.Fprog, &own.Fprog
		c.NoNewPrivs = true
	})
	for i := range 3 {
		src, err := unix.OpenTree(unix.AT_FDCWD, t.TempDir(), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		require.NoError(t, err)
		tree := os.NewFile(uintptr(src), "bind")
		err = child.Run(context.Background(), &Command{Path: []string{exit42}, Argv: []string{"exit42"}, Stdio: stdio(t),
			Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Cur: 64, Max: 64}},
			Binds:   []TreeBind{{Tree: tree, Target: dir + "/b", Dir: true}}})
		tree.Close()
		require.NoError(t, err, "run %d", i)
		ex, err := child.Wait()
		require.NoError(t, err, "run %d", i)
		require.True(t, ex.Reported, "run %d: init was killed: %v", i, ex.InitStatus)
		assert.Equal(t, 42, ex.Status.ExitStatus(), "run %d: %v", i, ex.Status)
		assert.True(t, ex.Reusable, "run %d", i)
	}
	runtime.KeepAlive(prog)
	runtime.KeepAlive(own)
}

// exitELF is an x86-64 executable whose one instruction after setting
// its registers is exit_group(code): the smallest program that makes one
// system call.
func exitELF(code byte) []byte {
	const base, hdrs = 0x400000, 64 + 56
	text := []byte{
		0xbf, code, 0, 0, 0, // mov edi, code
		0xb8, 231, 0, 0, 0, // mov eax, SYS_exit_group
		0x0f, 0x05, // syscall
	}
	size := uint64(hdrs + len(text))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2)    // ET_EXEC
	b = le.AppendUint16(b, 0x3e) // EM_X86_64
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+hdrs) // entry
	b = le.AppendUint64(b, 64)        // program headers
	b = le.AppendUint64(b, 0)         // no section headers
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, 64)
	b = le.AppendUint16(b, 56)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // PF_R|PF_X
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, text...)
}

// A reusable child's Run and Wait block their thread in poll: a cancel
// still ends the wait for the exec, and Close, from another goroutine,
// still ends a Wait (the child goes first, then its files).
func TestReusableWaitsEnd(t *testing.T) {
	t.Run("canceled Run", func(t *testing.T) {
		p := startReusable(t, t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := p.Run(ctx, &Command{Path: []string{"/bin/sleep"}, Argv: []string{"sleep", "100"}, Stdio: stdio(t)})
		require.ErrorIs(t, err, context.Canceled)
		assert.True(t, p.Reaped(), "a canceled Run kills the child")
	})
	t.Run("Close during Wait", func(t *testing.T) {
		p := startReusable(t, t.TempDir())
		require.NoError(t, p.Run(context.Background(), &Command{Path: []string{"/bin/sleep"}, Argv: []string{"sleep", "100"}, Stdio: stdio(t)}))
		waited := make(chan *Exit, 1)
		go func() {
			ex, _ := p.Wait()
			waited <- ex
		}()
		time.Sleep(50 * time.Millisecond) // into the poll
		closed := make(chan struct{})
		go func() {
			p.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return while Wait waited")
		}
		select {
		case ex := <-waited:
			if ex != nil {
				assert.False(t, ex.Reusable)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return after Close")
		}
	})
}

func TestPollReadable(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	assert.ErrorIs(t, pollReadable(ctx, r), context.Canceled, "a cancel ends the poll")
	assert.ErrorIs(t, pollReadable(ctx, r), context.Canceled, "a done context: no poll")

	time.AfterFunc(20*time.Millisecond, func() { w.Write([]byte("x")) })
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	require.NoError(t, pollReadable(ctx2, r), "data ends the poll")
	var b [1]byte
	_, err = r.Read(b[:])
	require.NoError(t, err)

	time.AfterFunc(20*time.Millisecond, func() { w.Close() })
	require.NoError(t, pollReadable(context.Background(), r), "the end of the pipe ends the poll")
}
