package forkexec

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runEcho starts sh -c script with the given environment and returns its
// output and init's pid.
func runEcho(t *testing.T, script string, env []string) (string, int) {
	t.Helper()
	return runOutput(t, &Config{DropCapabilities: dropCaps, Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", script}, Env: env})
}

// runOutput starts cfg's command with its output (stdout and stderr) in a
// pipe, and returns that output and init's pid once init is reaped.
func runOutput(t *testing.T, cfg *Config) (string, int) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	cfg.Stdio = [3]*os.File{stdio(t)[0], w, w}
	p, err := Start(cfg)
	require.NoError(t, err)
	pid := p.Pid
	require.NoError(t, p.Release(context.Background()))
	w.Close()
	ex, err := p.Wait()
	require.NoError(t, err)
	require.True(t, ex.Reported)
	out, _ := io.ReadAll(r)
	return string(out), pid
}

// Inits come from the zygote, and are still this process's children: it
// waits for them and gets their pidfds.
func TestZygote(t *testing.T) {
	if !haveZygote {
		t.Skip("no zygote on this architecture")
	}
	runEcho(t, "true", nil) // the zygote comes with the second start
	out, _ := runEcho(t, "echo $PPID", nil)
	zpid := zygotePid()
	require.NotZero(t, zpid, "a zygote was made")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(zpid) + "/comm")
	require.NoError(t, err)
	assert.Equal(t, "hutch-zygote\n", string(b))
	// The command's parent is init, whose parent is this process.
	initPid, err := strconv.Atoi(strings.TrimSpace(out))
	require.NoError(t, err)
	assert.NotEqual(t, zpid, initPid)

	// A zygote that dies is replaced, and no run fails for it.
	require.NoError(t, syscall.Kill(zpid, syscall.SIGKILL))
	out, _ = runEcho(t, "echo ok", nil)
	assert.Equal(t, "ok\n", out)
	out, _ = runEcho(t, "echo ok", nil)
	assert.Equal(t, "ok\n", out)
	assert.NotEqual(t, zpid, zygotePid())
	assert.NotZero(t, zygotePid())
}

// A request too large for one message, or for the zygote's staging area,
// is cloned directly.
func TestLargeRequest(t *testing.T) {
	for _, total := range []int{300 << 10, stageSize + 100<<10} {
		var env []string
		for i := 0; len(env)*100<<10 < total; i++ {
			env = append(env, "V"+strconv.Itoa(i)+"="+strings.Repeat("x", 100<<10))
		}
		out, _ := runEcho(t, "echo ${#V0} $V1 | wc -c", env)
		assert.Equal(t, strconv.Itoa(len("102400 ")+100<<10+1)+"\n", out)
	}
}

// copyTo must move every pointer of a childData into the arena: a pointer
// left behind would point into memory the zygote does not have. The list
// of pointer fields is spelled out, so that a new one fails here until
// copyTo handles it.
func TestCopyToCoversEveryPointer(t *testing.T) {
	var fields []string
	pointerFields(reflect.TypeFor[childData](), "", &fields)
	assert.ElementsMatch(t, []string{
		".ops", ".path", ".argv", ".envv", ".rlimits", ".closeRange", ".groups",
		".emptyPath", ".memPath", ".join", ".cgProcs", ".req",
		".reqMsg.Name", ".reqMsg.Iov", ".reqMsg.Control", ".reqIov.Base",
		".rootPath", ".msg.Name", ".msg.Iov", ".msg.Control", ".iov.Base",
		".oomPath", ".seccomp", ".initSeccomp", ".pathp",
	}, fields)

	s := func(v string) *byte { p, _ := syscall.BytePtrFromString(v); return p }
	filter := []unix.SockFilter{{Code: 6, K: 0x7fff0000}}
	initFilter := []unix.SockFilter{{Code: 6, K: 0x50001}}
	c := &childData{
		ops:         []op{{a: s("a"), b: s("b"), c: s("c"), d: s("d")}, {a: s("only a")}},
		path:        []*byte{s("/bin/sh"), nil},
		argv:        []*byte{s("sh"), s("-c"), nil},
		envv:        []*byte{s("A=1"), nil},
		rlimits:     []rlimit{{resource: 7}},
		closeRange:  [][2]uintptr{{0, 2}},
		groups:      []uint32{1, 2},
		emptyPath:   s(""),
		memPath:     s("/proc/self/mem"),
		join:        []int{5},
		cgProcs:     []int{6, 7},
		req:         new(request),
		rootPath:    s("/"),
		oomPath:     s("/proc/self/oom_score_adj"),
		socket:      true,
		seccomp:     &unix.SockFprog{Len: 1, Filter: &filter[0]},
		initSeccomp: &unix.SockFprog{Len: 1, Filter: &initFilter[0]},
	}
	c.reqIov.Base = (*byte)(unsafe.Pointer(c.req))
	c.reqMsg.Iov = &c.reqIov
	c.reqMsg.Control = &c.reqCmsg[0]
	c.iov.Base = &c.iovByte[0]
	c.msg.Iov = &c.iov
	c.msg.Control = &c.cmsg[0]

	buf := make([]byte, 256<<10)
	a := arena{buf: buf}
	cc := c.copyTo(&a)
	require.False(t, a.full)
	lo, hi := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[0]))+uintptr(len(buf))
	inArena := func(p uintptr) bool { return p >= lo && p < hi }
	var check func(v reflect.Value, path string)
	check = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.UnsafePointer:
			if !v.IsNil() {
				assert.True(t, inArena(v.Pointer()), "%s points outside the arena", path)
			}
		case reflect.Slice:
			if !v.IsNil() {
				assert.True(t, inArena(v.Pointer()), "%s points outside the arena", path)
				for i := range v.Len() {
					check(v.Index(i), path+"["+strconv.Itoa(i)+"]")
				}
			}
		case reflect.Struct:
			for i := range v.NumField() {
				check(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		}
	}
	check(reflect.ValueOf(cc).Elem(), "")
	assert.Equal(t, "only a", unix.BytePtrToString(cc.ops[1].a))
	assert.Equal(t, "-c", unix.BytePtrToString(cc.argv[1]))
	assert.Nil(t, cc.argv[2])
	assert.Equal(t, uint32(0x7fff0000), cc.seccomp.Filter.K)
	assert.Equal(t, uint32(0x50001), cc.initSeccomp.Filter.K)
	assert.Equal(t, []uint32{1, 2}, cc.groups)

	// Too small an arena says so.
	small := arena{buf: make([]byte, 1024)}
	c.copyTo(&small)
	assert.True(t, small.full)
}

// pointerFields lists where t holds pointers, as field paths: the fields
// copyTo must move into the arena.
func pointerFields(t reflect.Type, prefix string, out *[]string) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.UnsafePointer, reflect.String, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface:
		*out = append(*out, prefix)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			pointerFields(f.Type, prefix+"."+f.Name, out)
		}
	case reflect.Array:
		if t.Len() > 0 {
			var inner []string
			pointerFields(t.Elem(), prefix+"[]", &inner)
			*out = append(*out, inner...)
		}
	}
}

// The command starts with default signal dispositions and no copy of the
// caller's command line, whether init came from the zygote or not, and
// whatever the Go program ignores.
func TestCleanStart(t *testing.T) {
	signal.Ignore(syscall.SIGUSR2)
	defer signal.Reset(syscall.SIGUSR2)
	zygMu.Lock()
	if zyg != nil { // a new one, born with SIGUSR2 ignored
		zyg.close()
		zyg = nil
	}
	zygMu.Unlock()
	for range 3 {
		out, _ := runEcho(t, "grep SigIgn /proc/self/status; tr -d '\\0' < /proc/$PPID/cmdline | wc -c", nil)
		assert.Equal(t, "SigIgn:\t0000000000000000\n0\n", out)
	}
	assert.NotZero(t, zygotePid())
}

// A zygote made under other credentials than the process has now (it
// dropped root, say) is not used: a new one is made.
func TestZygoteFollowsCredentials(t *testing.T) {
	if !haveZygote {
		t.Skip("no zygote on this architecture")
	}
	runEcho(t, "true", nil)
	runEcho(t, "true", nil)
	old := zygotePid()
	require.NotZero(t, old)
	zygMu.Lock()
	zyg.id.euid++ // as if this process had changed its uid since
	zygMu.Unlock()
	out, _ := runEcho(t, "id -u", nil)
	assert.Equal(t, strconv.Itoa(os.Geteuid())+"\n", out)
	assert.NotEqual(t, old, zygotePid(), "replaced")
	assert.NotZero(t, zygotePid())
}

// The zygote empties its bounding set once, so that commands which drop
// their capabilities need not: theirs is empty from the start. A command
// that keeps its capabilities (and so a full bounding set) is cloned
// directly.
func TestZygoteBoundingSet(t *testing.T) {
	if !haveZygote {
		t.Skip("no zygote on this architecture")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: only a zygote that may empty its bounding set does")
	}
	capBnd := func(status string) string {
		for line := range strings.Lines(status) {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no CapBnd in %q", status)
		return ""
	}
	run := func(drop bool, flags uintptr) string {
		t.Helper()
		out, _ := runOutput(t, &Config{DropCapabilities: drop, Cloneflags: flags, Path: []string{"/bin/cat"},
			Argv: []string{"cat", "/proc/self/status"}})
		return capBnd(out)
	}
	for range 2 { // the zygote comes with the second start
		assert.Equal(t, "0000000000000000", run(true, unix.CLONE_NEWPID))
	}
	zpid := zygotePid()
	require.NotZero(t, zpid)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(zpid) + "/status")
	require.NoError(t, err)
	assert.Equal(t, "0000000000000000", capBnd(string(status)), "the zygote's")
	assert.Equal(t, "0000000000000000", run(true, 0))

	own, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	require.NotEqual(t, "0000000000000000", capBnd(string(own)))
	assert.Equal(t, capBnd(string(own)), run(false, unix.CLONE_NEWPID), "kept, as this process has it")
	assert.Equal(t, capBnd(string(own)), run(false, 0))
}

// requireSharedInits skips the test where no init shares the zygote's
// memory: no zygote, the race detector, or no PID namespace (not root).
func requireSharedInits(t *testing.T) {
	t.Helper()
	if !haveZygote {
		t.Skip("no zygote on this architecture")
	}
	if raceEnabled {
		t.Skip("inits share no memory under the race detector")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
}

// sameMemory reports whether processes a and b share their memory (kcmp
// KCMP_VM).
func sameMemory(t *testing.T, a, b int) bool {
	t.Helper()
	const kcmpVM = 1
	r, _, errno := syscall.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpVM, 0, 0, 0)
	if errno == syscall.ENOSYS {
		t.Skip("needs kcmp (CONFIG_KCMP)")
	}
	require.Zero(t, errno, "kcmp")
	return r == 0
}

// startPaused starts an init of a new PID namespace that sets nothing up
// and stays.
func startPaused(t *testing.T) *Process {
	t.Helper()
	p, err := Start(&Config{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Pause: true, Stdio: stdio(t)})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	return p
}

// An init of a new PID namespace shares the zygote's memory, in a slot of
// its own that it gives back once reaped; inits without one get a copy.
// With every slot taken, an init gets a copy too, and works as well.
func TestInitSlots(t *testing.T) {
	requireSharedInits(t)
	runEcho(t, "true", nil) // the zygote comes with the second start
	runEcho(t, "true", nil)
	zpid := zygotePid()
	require.NotZero(t, zpid)
	zygMu.Lock()
	area := zygSlots
	zygMu.Unlock()
	inUse := func() int {
		area.mu.Lock()
		defer area.mu.Unlock()
		return area.inUse
	}
	require.Zero(t, inUse())

	// Leave two never-used slots and no free one.
	area.mu.Lock()
	saved := area.free
	area.free = nil
	area.next = len(area.mem)/slotSize - 2
	area.mu.Unlock()
	defer func() {
		area.mu.Lock()
		area.free = append(area.free, saved...)
		area.mu.Unlock()
	}()

	var ps []*Process
	var p *Process
	for range 4 {
		ps = append(ps, startPaused(t))
	}
	assert.True(t, sameMemory(t, zpid, ps[0].Pid), "the first init shares the zygote's memory")
	assert.True(t, sameMemory(t, zpid, ps[1].Pid), "so does the second")
	assert.False(t, sameMemory(t, zpid, ps[2].Pid), "no slot left: a copy")
	assert.False(t, sameMemory(t, zpid, ps[3].Pid), "no slot left: a copy")
	assert.Equal(t, 2, inUse())
	// Each is alive and an init of its own namespace.
	for _, p := range ps {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/status")
		require.NoError(t, err)
		assert.Contains(t, string(b), "NSpid:\t"+strconv.Itoa(p.Pid)+"\t1\n")
	}
	for _, p := range ps {
		require.NoError(t, p.Kill())
		_, err := p.Wait()
		require.NoError(t, err)
	}
	assert.Zero(t, inUse(), "every slot is back")

	// A slot given back serves the next init.
	p = startPaused(t)
	assert.True(t, sameMemory(t, zpid, p.Pid))
	require.NoError(t, p.Kill())
	p.Close()
	assert.Zero(t, inUse())

	// So does one asked to (Config.OwnMemory).
	p, err := Start(&Config{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Pause: true, Stdio: stdio(t), OwnMemory: true})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	assert.False(t, sameMemory(t, zpid, p.Pid))
	assert.Zero(t, inUse())
	require.NoError(t, p.Kill())
	p.Close()

	// An init without a PID namespace of its own gets a copy.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	q, err := Start(&Config{DropCapabilities: dropCaps, Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", "read x"}, Stdio: [3]*os.File{r, w, w}})
	require.NoError(t, err)
	w.Close()
	require.NoError(t, q.Release(context.Background()))
	assert.False(t, sameMemory(t, zpid, q.Pid))
	q.Kill()
	q.Wait()
}

// Inits sharing the zygote's memory, started and ending side by side,
// each run their own command: no slot is given to two at once.
func TestInitSlotsConcurrent(t *testing.T) {
	if !haveZygote {
		t.Skip("no zygote on this architecture")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	runEcho(t, "true", nil)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			errs <- func() error {
				for i := range 20 {
					want := fmt.Sprintf("%d-%d", g, i)
					r, w, err := os.Pipe()
					if err != nil {
						return err
					}
					p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Path: []string{"/bin/echo"},
						Argv: []string{"echo", want}, Stdio: [3]*os.File{stdio(t)[0], w, w}})
					if err == nil {
						err = p.Release(context.Background())
					}
					w.Close()
					if err != nil {
						r.Close()
						return err
					}
					out, _ := io.ReadAll(r)
					r.Close()
					ex, err := p.Wait()
					if err != nil {
						return err
					}
					if !ex.Reported || ex.Status.ExitStatus() != 0 || string(out) != want+"\n" {
						return fmt.Errorf("run %s: reported %v, status %v, output %q", want, ex.Reported, ex.Status, out)
					}
				}
				return nil
			}()
		}()
	}
	for range 8 {
		assert.NoError(t, <-errs)
	}
	zygMu.Lock()
	area := zygSlots
	zygMu.Unlock()
	area.mu.Lock()
	defer area.mu.Unlock()
	assert.Zero(t, area.inUse)
}

// An init sharing the memory of a zygote that died lives on, and gives its
// slot back to that zygote's area, which is unmapped once the last slot is
// back; a new zygote with an area of its own serves the next inits.
func TestInitOutlivesZygote(t *testing.T) {
	requireSharedInits(t)
	runEcho(t, "true", nil)
	runEcho(t, "true", nil)
	zpid := zygotePid()
	require.NotZero(t, zpid)
	p := startPaused(t)
	require.True(t, sameMemory(t, zpid, p.Pid))
	zygMu.Lock()
	old := zygSlots
	zygMu.Unlock()

	require.NoError(t, syscall.Kill(zpid, syscall.SIGKILL))
	out, _ := runEcho(t, "echo ok", nil) // finds the zygote dead, makes a new one
	assert.Equal(t, "ok\n", out)
	q := startPaused(t)
	assert.NotEqual(t, zpid, zygotePid())
	assert.True(t, sameMemory(t, zygotePid(), q.Pid), "the new zygote's init")
	zygMu.Lock()
	assert.NotSame(t, old, zygSlots)
	zygMu.Unlock()

	// The old init still answers: it is alive and reaped as usual.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/comm")
	require.NoError(t, err)
	assert.Equal(t, "hutch-init\n", string(b))
	require.NoError(t, p.Kill())
	_, err = p.Wait()
	require.NoError(t, err)
	old.mu.Lock()
	assert.Zero(t, old.inUse)
	assert.Nil(t, old.mem, "the dead zygote's area is unmapped once its last slot is back")
	old.mu.Unlock()
	require.NoError(t, q.Kill())
	_, err = q.Wait()
	require.NoError(t, err)
}

// A request larger than a slot's request area goes in the message, and
// its init, of a new PID namespace all the same, gets a copy.
func TestLargeRequestCopies(t *testing.T) {
	requireSharedInits(t)
	runEcho(t, "true", nil)
	env := []string{"V1=" + strings.Repeat("x", 100<<10), "V2=" + strings.Repeat("y", 100<<10)}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	in, inW, err := os.Pipe()
	require.NoError(t, err)
	defer in.Close()
	p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWPID, Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", "echo ${#V1} ${#V2}; read x"},
		Env: env, Stdio: [3]*os.File{in, w, w}})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	assert.False(t, sameMemory(t, zygotePid(), p.Pid), "too large for a slot")
	inW.Close() // read x ends
	w.Close()
	ex, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, ex.Reported)
	out, _ := io.ReadAll(r)
	assert.Equal(t, "102400 102400\n", string(out))
}
