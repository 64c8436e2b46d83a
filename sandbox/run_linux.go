package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/ns"
	"github.com/hutchbox/hutch/rootfs"
	"golang.org/x/sys/unix"
)

// Why the parent killed a run; the first reason wins.
const (
	killNone int32 = iota
	killWall
	killOutput
	killCanceled
	killCPU
	// killFinished is no kill: a pooled run whose sandbox serves the next
	// one ended cleanly, and a kill from now on must not reach its init.
	killFinished
)

// Run runs the command and waits for it to end.
//
// The error is nil whenever the command ran, whatever its status. It is a
// *ConfigError for a bad argument, an error from the image's Resolve for
// a bad image, a *SetupError when the sandbox could not be set up or the
// command not executed, and the context's error (with a Result of status
// Canceled) when ctx ended first. Nothing Run created outlives it.
//
// A Cmd from Sandbox.Command runs inside that sandbox instead.
func (c *Cmd) Run(ctx context.Context) (*Result, error) {
	r, err := c.start(ctx)
	if err != nil {
		return nil, err
	}
	return r.wait()
}

// Start starts the command and returns once it has been executed; the
// Process's Wait then waits for it to end. The context kills the command
// when it ends first, as for Run.
func (c *Cmd) Start(ctx context.Context) (*Process, error) {
	r, err := c.start(ctx)
	if err != nil {
		return nil, err
	}
	p := &Process{run: r, done: make(chan struct{})}
	go func() {
		p.res, p.err = r.wait()
		close(p.done)
	}()
	return p, nil
}

// Process is a command started with Cmd.Start.
type Process struct {
	run  *run
	done chan struct{}
	res  *Result
	err  error
}

// Wait waits for the command to end and returns its Result, as Cmd.Run
// would have.
func (p *Process) Wait() (*Result, error) {
	<-p.done
	return p.res, p.err
}

// Done is closed when the command has ended and Wait will not block.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the command (not to the rest of its sandbox). It
// does nothing once the command has ended.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pid, err := p.run.proc.CommandPid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}

// start does everything up to the command's execve, and starts the
// goroutines that feed and drain it and watch its limits.
func (c *Cmd) start(ctx context.Context) (*run, error) {
	if ctx == nil {
		panic("sandbox: nil Context")
	}
	if c.sandbox != nil {
		return c.sandbox.start(ctx, c)
	}
	if err := c.validate(true); err != nil {
		return nil, err
	}
	orig := c
	spec, err := c.Image.Resolve()
	if err != nil {
		return nil, fmt.Errorf("sandbox: image: %w", err)
	}
	c, limits, enf, err := c.prepare(spec)
	if err != nil {
		return nil, err
	}
	r := &run{ctx: ctx, cmd: c, limits: limits, enf: enf}
	if enf.cgroup {
		// All of the run dies with its init: no freezer needed to kill it.
		r.name = takeRunName()
		r.cgroup = &cgroup.Config{Name: r.name.name(), Resources: enf.resources, NoFreezer: true}
	}
	plan, err := c.plan(spec, runCommand, r.cgroup)
	if err != nil {
		r.name.giveBack()
		return nil, err
	}
	plan.config.Rlimits = enf.rlimits
	if err := ctx.Err(); err != nil {
		plan.abandon()
		r.name.giveBack()
		return nil, err
	}
	collectGarbageOnce()
	if err := r.start(plan); err != nil {
		plan.abandon()
		var se *SetupError
		if enf.guessed && errors.As(err, &se) && se.Stage == stageCreateCgroup && cgroupErr() != nil {
			// The guess was wrong: this process cannot make groups (the
			// probe, made now, agrees). Again, without a cgroup.
			return orig.start(ctx)
		}
		return nil, err
	}
	if enf.guessed {
		cgroupLearned()
	}
	return r, nil
}

// prepare applies the image's run configuration to c, checks the result,
// and decides how its limits are enforced.
func (c *Cmd) prepare(spec *rootfs.Spec) (*Cmd, Limits, *enforcement, error) {
	c, err := c.withImageConfig(spec)
	if err != nil {
		return nil, Limits{}, nil, err
	}
	if err := c.validate(false); err != nil {
		return nil, Limits{}, nil, err
	}
	limits := c.Limits.withDefaults()
	enf, err := enforce(c.Limits, true)
	if err != nil {
		return nil, Limits{}, nil, err
	}
	return c, limits, enf, nil
}

func (l Limits) withDefaults() Limits {
	if l.Output == 0 {
		l.Output = DefaultOutput
	}
	if l.Disk == 0 {
		l.Disk = DefaultDisk
	}
	if l.Pids == 0 {
		l.Pids = DefaultPids
	}
	return l
}

// run is the state of one command, from start to wait.
type run struct {
	ctx    context.Context
	cmd    *Cmd
	limits Limits
	enf    *enforcement
	// cgroup, when set, is the group the run makes for itself.
	cgroup *cgroup.Config
	killed atomic.Int32
	proc   *forkexec.Process
	cg     *cgroup.Manager
	// cpuBase is the cgroup's CPU usage when the command was executed:
	// the sandbox's own setup is not the command's to pay for. cpu reads
	// it then and again at the end, through the file opened once.
	cpuBase time.Duration
	cpu     *cgroup.CPUCounter
	lock    *runLock
	// inSandbox: the command runs in a long-lived Sandbox, where what it
	// leaves running may hold its output open after it ends.
	inSandbox bool
	// sharedLock: the run's cgroup is under a sandbox's, whose lock
	// covers it.
	sharedLock bool
	// pooled, when set, is a sandbox a Pool set up ahead for this run;
	// reuse says it was left clean and may serve another run.
	pooled *pooledSandbox
	reuse  bool
	// name holds the number in the run's own cgroup's name, if it has one.
	name *nameHolder

	startTime      time.Time
	stdinW         *os.File
	parentEnds     []*os.File
	copiers        sync.WaitGroup
	stdout, stderr *capWriter
	cleanup        []func()
	stopCtx        func() bool
	wallTimer      *time.Timer
	watchdogDone   chan struct{}
}

func (r *run) kill(reason int32) {
	if !r.killed.CompareAndSwap(killNone, reason) && r.killed.Load() == killFinished {
		return
	}
	if r.inSandbox {
		// The child that joined a long-lived sandbox is outside its PID
		// namespace: its death does not end the command. Kill the
		// command's own cgroup (all it started), or at least the command.
		if r.cg != nil {
			r.cg.Kill()
		} else if pid, err := r.proc.CommandPid(); err == nil {
			syscall.Kill(-pid, syscall.SIGKILL) // its process group: it is a session leader
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	r.proc.Kill()
}

// undo runs the cleanups registered so far, last first.
func (r *run) undo() {
	for i := len(r.cleanup) - 1; i >= 0; i-- {
		r.cleanup[i]()
	}
	r.cleanup = nil
}

func (r *run) start(plan *plan) (err error) {
	c := r.cmd
	defer func() {
		if err != nil {
			r.undo()
		}
	}()
	// First in, so last out: the group is removed once all else is done.
	// (A pooled run's is, with its sandbox: see Pool.Run.)
	if r.pooled == nil {
		r.cleanup = append(r.cleanup, r.freeCgroup)
	}
	if c.WritableLayer != "" {
		// The overlay's work dir is scratch space; the upper dir is the layer.
		r.cleanup = append(r.cleanup, func() { removeWorkDir(filepath.Join(c.WritableLayer, "work")) })
	}
	// Files the parent must close once the child has its copies.
	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	closeParentEnds := func() {
		for _, f := range r.parentEnds {
			f.Close()
		}
	}
	r.cleanup = append(r.cleanup, closeParentEnds)

	var stdin *os.File
	switch in := c.Stdin.(type) {
	case nil:
		f, err := devNull()
		if err != nil {
			return err
		}
		stdin = f
	case *os.File:
		stdin = in
	default:
		pw, pr, err := pipe(true)
		if err != nil {
			return err
		}
		stdin, r.stdinW = pr, pw
		childEnds = append(childEnds, pr)
		r.parentEnds = append(r.parentEnds, pw)
	}
	outR, outW, err := pipe(false)
	if err != nil {
		return err
	}
	childEnds = append(childEnds, outW)
	r.parentEnds = append(r.parentEnds, outR)
	errR, errW, err := pipe(false)
	if err != nil {
		return err
	}
	childEnds = append(childEnds, errW)
	r.parentEnds = append(r.parentEnds, errR)

	cfg := plan.config
	cfg.Stdio = [3]*os.File{stdin, outW, errW}
	if !plan.cgroupInChild() {
		if err := r.makeCgroup(); err != nil {
			return err
		}
		if r.cg != nil && (r.pooled == nil || !r.pooled.initInGroup) {
			procs, dir, err := r.cgroupFiles(r.pooled == nil || r.pooled.reusable)
			if err != nil {
				return err
			}
			childEnds = append(childEnds, procs...)
			if dir != nil {
				childEnds = append(childEnds, dir)
			}
			cfg.CgroupProcs, cfg.CgroupDir = procs, dir
		}
	}
	if r.pooled != nil {
		err = r.launchPooled(cfg.Stdio, cfg.CgroupProcs, cfg.CgroupDir)
	} else {
		err = r.launch(plan, &cfg)
	}
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil
	if err != nil {
		return err
	}
	if r.cg != nil {
		if cpu, err := r.cg.OpenCPUCounter(); err == nil {
			r.cpu = cpu
			r.cleanup = append(r.cleanup, func() { cpu.Close() })
			if used, err := cpu.Read(); err == nil {
				r.cpuBase = used
			}
		}
	}

	// The command runs. Feed stdin, drain stdout and stderr.
	if r.stdinW != nil {
		go func(w *os.File) {
			io.Copy(w, c.Stdin)
			w.Close()
		}(r.stdinW)
	}
	r.stdout = &capWriter{dst: c.Stdout, limit: r.limits.Output, onLimit: func() { r.kill(killOutput) }}
	r.stderr = &capWriter{dst: c.Stderr, limit: r.limits.Output, onLimit: func() { r.kill(killOutput) }}
	for _, p := range []struct {
		w *capWriter
		f *os.File
	}{{r.stdout, outR}, {r.stderr, errR}} {
		r.copiers.Add(1)
		go func() {
			defer r.copiers.Done()
			p.w.drain(p.f)
		}()
	}
	if r.limits.WallTime > 0 {
		r.wallTimer = time.AfterFunc(r.limits.WallTime, func() { r.kill(killWall) })
	}
	r.stopCtx = context.AfterFunc(r.ctx, func() { r.kill(killCanceled) })
	r.watchdogDone = make(chan struct{})
	if r.cg != nil && r.limits.CPUTime > 0 {
		go r.cpuWatchdog(r.watchdogDone)
	}
	return nil
}

// pipe makes a pipe for the command's stdio: the parent's end (the write
// end when parentWrites, else the read end) in the runtime's poller, the
// child's end a plain blocking descriptor, which os.Pipe would also
// register with the poller and forkexec then set back to blocking: four
// system calls a pipe saved.
func pipe(parentWrites bool) (parent, child *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	pi, ci := 0, 1
	if parentWrites {
		pi, ci = 1, 0
	}
	// The child's end blocks again: one F_SETFL, where setting the
	// parent's end non-blocking took an F_GETFL too.
	if _, err := unix.FcntlInt(uintptr(p[ci]), unix.F_SETFL, 0); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(p[pi]), "|1"), os.NewFile(uintptr(p[ci]), "|0"), nil
}

// devNull is /dev/null opened for reading, the stdin of every command
// that has none: opened once.
var devNull = sync.OnceValues(func() (*os.File, error) {
	return os.Open(os.DevNull)
})

// makeCgroup creates the run's cgroup, if it is to have one of its own.
func (r *run) makeCgroup() (err error) {
	if r.cgroup == nil {
		return nil
	}
	if r.sharedLock {
		r.cg, err = newGroup(r.cgroup, r.name)
	} else {
		r.lock, r.cg, err = newLockedGroup(r.cgroup, r.name)
	}
	return err
}

// cgroupFiles opens what the command needs to be in the run's cgroup from
// its first instruction: the group's join files (cgroup.JoinFiles), which
// it writes itself into, and on v2 its directory, for clone3's CLONE_INTO_CGROUP.
// The caller closes them once the child has its copies. A command of a
// pooled sandbox serving one run only (withDir false) joins through the
// files alone, on v1; on v2 its init is in the group already.
func (r *run) cgroupFiles(withDir bool) (procs []*os.File, dir *os.File, err error) {
	if procs, err = r.cg.OpenJoinFiles(); err != nil {
		se := &SetupError{Stage: "open cgroup", Err: err}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			se.Path = pe.Path
		}
		return nil, nil, se
	}
	if withDir && r.cg.Mode() == cgroup.V2 {
		if dir, err = r.cg.OpenDir(); err != nil {
			for _, f := range procs {
				f.Close()
			}
			return nil, nil, &SetupError{Stage: "open cgroup", Err: err}
		}
	}
	return procs, dir, nil
}

// launch clones the child for plan and lets it set up and execute the
// command.
func (r *run) launch(plan *plan, cfg *forkexec.Config) error {
	// Without a user namespace there is nothing to do between the clone
	// and the setup: init goes on at once.
	cfg.Immediate = !plan.userNS
	var made chan error
	if plan.cgroupInChild() {
		// Made while the child is cloned and sets up, on another CPU
		// where there is one: the child opens the group's files after
		// the go-ahead.
		made = make(chan error, 1)
		go func() { made <- r.makeCgroup() }()
	}
	proc, err := forkexec.Start(cfg)
	runtime.KeepAlive(plan)
	var cgErr error
	if made != nil {
		// Also when the clone failed: what was made, r.cleanup removes.
		cgErr = <-made
	}
	if err != nil {
		return r.setupError(err) // the caller abandons the plan
	}
	r.proc = proc
	r.recycleNetnsAfter(plan)
	if cgErr != nil {
		proc.Close()
		return cgErr
	}
	// In a user namespace the child waits for the go-ahead, for its ID
	// maps. The command moves itself into its cgroup before anything
	// else, so no instruction of it runs uncounted.
	if err := r.place(plan); err != nil {
		proc.Close()
		return err
	}
	r.startTime = time.Now()
	if err := proc.Release(r.ctx); err != nil {
		if r.ctx.Err() != nil && errors.Is(err, r.ctx.Err()) {
			return err
		}
		return r.setupError(err)
	}
	return nil
}

// recycleNetnsAfter arranges for the run's network namespace to be offered
// to later runs once this one is over.
func (r *run) recycleNetnsAfter(plan *plan) {
	if netns := plan.takeNetns(r.proc.Pid); netns != nil {
		r.cleanup = append(r.cleanup, func() { offerNetns(netns, r.proc) })
	}
}

// takeNetns returns the network namespace that the child started for the
// plan, process pid, is in, when it may be offered to later runs: the one
// it joined (plan.netns, which the caller then owns) or its own.
func (p *plan) takeNetns(pid int) *os.File {
	if !p.recycleNet {
		return nil
	}
	netns := p.netns
	if netns == nil {
		netns = ns.OpenNetwork(pid)
	}
	p.netns = nil
	return netns
}

// offerNetns offers netns, which proc's sandbox was in, to later runs once
// proc has been reaped (every process in it is gone, see
// ns.RecycleNetwork), and closes it otherwise.
func offerNetns(netns *os.File, proc *forkexec.Process) {
	if proc.Reaped() {
		ns.RecycleNetwork(netns)
	} else if netns != nil {
		netns.Close()
	}
}

// wait waits for the command, collects its Result and removes what the
// run created.
func (r *run) wait() (*Result, error) {
	defer r.undo()
	ex, waitErr := r.proc.Wait()
	wall := time.Since(r.startTime)
	if waitErr == nil && ex.Reusable {
		// Unless a limit or a cancel killed init already, no kill will.
		r.reuse = r.killed.CompareAndSwap(killNone, killFinished)
	}
	close(r.watchdogDone)
	r.stopCtx()
	if r.wallTimer != nil {
		r.wallTimer.Stop()
	}
	if r.inSandbox {
		// What the command left running in the sandbox may still hold its
		// output open: give the pipes a moment, then stop reading.
		copied := make(chan struct{})
		go func() { r.copiers.Wait(); close(copied) }()
		select {
		case <-copied:
		case <-time.After(100 * time.Millisecond):
			for _, f := range r.parentEnds {
				f.Close()
			}
			<-copied
		}
	} else {
		// Every process of the sandbox is gone, so the pipes are at EOF.
		r.copiers.Wait()
	}
	if waitErr != nil {
		return nil, waitErr
	}
	res := r.result(ex, wall)
	if err := r.cgroupStats(res); err != nil {
		return nil, err
	}
	res.Status = r.status(ex, res)
	res.Stdout, res.StdoutTruncated = r.stdout.buf, r.stdout.truncated
	res.Stderr, res.StderrTruncated = r.stderr.buf, r.stderr.truncated
	if err := r.stdout.err; err != nil {
		return res, fmt.Errorf("sandbox: writing stdout: %w", err)
	}
	if err := r.stderr.err; err != nil {
		return res, fmt.Errorf("sandbox: writing stderr: %w", err)
	}
	if res.Status == Canceled {
		return res, r.ctx.Err()
	}
	return res, nil
}

// result turns the wait status into a Result, without its status.
func (r *run) result(ex *forkexec.Exit, wall time.Duration) *Result {
	res := &Result{ExitCode: -1, WallTime: wall, Enforced: r.enf.enforced}
	ws := ex.InitStatus
	if ex.Reported {
		ws = ex.Status
		ru := &ex.Rusage
		res.CPUTime = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		res.MemoryPeak = ru.Maxrss * 1024
	}
	switch {
	case ws.Exited():
		res.ExitCode = ws.ExitStatus()
	case ws.Signaled():
		res.Signal = ws.Signal()
	}
	return res
}

// status decides the verdict, in the order documented on Status.
func (r *run) status(ex *forkexec.Exit, res *Result) Status {
	killed := r.killed.Load()
	l := r.limits
	switch {
	case res.OOMKills > 0:
		return MemoryLimit
	case killed == killCPU,
		l.CPUTime > 0 && res.CPUTime >= l.CPUTime,
		l.CPUTime > 0 && res.Signal == syscall.SIGXCPU:
		return CPUTimeLimit
	case killed == killWall:
		return WallTimeLimit
	case killed == killOutput:
		return OutputLimit
	case res.Signal == syscall.SIGXFSZ && l.FileSize > 0:
		return FileSizeLimit
	case killed == killCanceled:
		return Canceled
	case res.Signal != 0:
		return Signaled
	case res.ExitCode != 0:
		return NonZeroExit
	}
	return OK
}

func (r *run) setupError(err error) error { return setupError(err, r.cmd.Args) }

// setupError turns a child's failure into a *SetupError; an execve
// failure names the command (args[0]).
func setupError(err error, args []string) error {
	var se *forkexec.StepError
	if errors.As(err, &se) {
		path := se.Path
		if se.Stage == "execve" && len(args) > 0 {
			path = args[0]
		}
		return &SetupError{Stage: se.Stage, Path: path, Err: se.Err}
	}
	return &SetupError{Stage: "start", Err: err}
}

// place writes the waiting child's ID maps.
func (r *run) place(plan *plan) error {
	if plan.userNS {
		return writeIDMaps(r.proc)
	}
	return nil
}

// cpuWatchdog kills the sandbox once its cgroup has used Limits.CPUTime.
// It polls more often as the budget runs out, allowing for every CPU
// burning it at once.
func (r *run) cpuWatchdog(done <-chan struct{}) {
	parallel := time.Duration(runtime.NumCPU())
	if c := r.limits.CPUs; c > 0 && time.Duration(math.Ceil(c)) < parallel {
		parallel = time.Duration(math.Ceil(c))
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		used, err := r.cg.CPUUsage()
		if err != nil {
			return
		}
		left := r.limits.CPUTime - (used - r.cpuBase)
		if left <= 0 {
			r.kill(killCPU)
			return
		}
		t.Reset(min(max(left/parallel/2, 2*time.Millisecond), 50*time.Millisecond))
	}
}

// cgroupStats replaces the rusage figures with the cgroup's, which count
// every process of the sandbox.
func (r *run) cgroupStats(res *Result) error {
	if r.cg == nil {
		return nil
	}
	// Only the total of the CPU figures: on v1 that is one file to read,
	// not three.
	var (
		used time.Duration
		err  error
	)
	if r.cpu != nil {
		used, err = r.cpu.Read()
	} else {
		used, err = r.cg.CPUUsage()
	}
	if err != nil {
		return fmt.Errorf("sandbox: reading the run's cgroup: %w", err)
	}
	st, err := r.cg.Stat(cgroup.StatMemory)
	if err != nil {
		return fmt.Errorf("sandbox: reading the run's cgroup: %w", err)
	}
	res.CPUTime = max(used-r.cpuBase, 0)
	res.MemoryPeak = st.MemoryPeak
	res.OOMKills = st.OOMKills
	return nil
}

// freeCgroup removes whatever the run has of its cgroup, its lock and its
// name (see freeGroup).
func (r *run) freeCgroup() { freeGroup(r.cg, r.lock, r.name) }

// runNames numbers runs' cgroups (and their locks): "run-PID-N", N the
// smallest number no run of this process holds. A name is taken back once
// its group and lock are gone, so a process uses as many names as it has
// runs at once. Every name removed leaves a negative dentry in the kernel
// (the lock file, the group's directory in each v1 hierarchy) that stays
// until memory runs short: unique names left four per run, millions in a
// day of judging. Sandboxes ("sb-PID-N") and the commands of each
// ("exec-N", in its group) are numbered the same way.
var runNames, sandboxNames nameSet

// nameSet hands out small positive numbers, the smallest free one first.
type nameSet struct {
	mu   sync.Mutex
	free []uint64 // returned numbers, below next
	next uint64   // the smallest number never handed out, less one
}

func (s *nameSet) get() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 {
		s.next++
		return s.next
	}
	i := 0
	for j, n := range s.free {
		if n < s.free[i] {
			i = j
		}
	}
	n := s.free[i]
	s.free[i] = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return n
}

func (s *nameSet) put(n uint64) {
	s.mu.Lock()
	s.free = append(s.free, n)
	s.mu.Unlock()
}

// nameHolder is a number from a nameSet, in a cgroup's name, given back
// only if what was named by it is known to be gone.
type nameHolder struct {
	set    *nameSet
	prefix string // "run-PID-", "sb-PID-", "exec-"
	n      uint64
	stale  bool // a group or lock by this name may still exist
}

func takeName(set *nameSet, prefix string) *nameHolder {
	return &nameHolder{set: set, prefix: prefix, n: set.get()}
}

// takeRunName names a run's cgroup: unique among the live runs of this
// process, and saying which process owns it.
func takeRunName() *nameHolder {
	return takeName(&runNames, "run-"+strconv.Itoa(os.Getpid())+"-")
}

func (h *nameHolder) name() string { return h.prefix + strconv.FormatUint(h.n, 10) }

// markStale records that a group or lock by this name may still exist.
func (h *nameHolder) markStale() {
	if h != nil {
		h.stale = true
	}
}

// giveBack returns the number, unless its group or lock may still be
// there: then it is never handed out again.
func (h *nameHolder) giveBack() {
	if h != nil && !h.stale && h.n != 0 {
		h.set.put(h.n)
		h.n = 0
	}
}

// capWriter collects or forwards output up to a limit.
type capWriter struct {
	dst       io.Writer // nil: collect into buf
	limit     int64
	onLimit   func()
	n         int64
	buf       []byte
	truncated bool
	err       error
}

// drainBufs are the copy buffers of capWriter.drain, reused from run to
// run: two 32 KiB buffers a run were most of what a run allocated.
var drainBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (w *capWriter) drain(f *os.File) {
	buf := drainBufs.Get().(*[32 << 10]byte)
	defer drainBufs.Put(buf)
	b := buf[:]
	for {
		n, err := f.Read(b)
		if n > 0 {
			w.write(b[:n])
		}
		if err != nil {
			return
		}
	}
}

func (w *capWriter) write(p []byte) {
	if room := w.limit - w.n; int64(len(p)) > room {
		p = p[:max(room, 0)]
		if !w.truncated {
			w.truncated = true
			w.onLimit()
		}
	}
	w.n += int64(len(p))
	if len(p) == 0 {
		return
	}
	if w.dst == nil {
		w.buf = append(w.buf, p...)
		return
	}
	if w.err == nil {
		_, w.err = w.dst.Write(p)
	}
}

// lookPath lists the candidates for argv0 in order, as execvp tries them.
func lookPath(argv0, pathEnv string) []string {
	if strings.Contains(argv0, "/") {
		return []string{argv0}
	}
	var out []string
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		out = append(out, d+"/"+argv0)
	}
	return out
}

type resolvedBind struct {
	Bind
	dir         bool
	parents     []string
	lockedFlags uintptr
}

// imageBinds are the image's own binds; their targets exist in the image.
func imageBinds(binds []rootfs.Bind) []resolvedBind {
	out := make([]resolvedBind, 0, len(binds))
	for _, b := range binds {
		rb := resolvedBind{Bind: b, dir: true}
		if fi, err := os.Stat(b.Source); err == nil {
			rb.dir = fi.IsDir()
		}
		rb.lockedFlags = lockedFlags(b.Source)
		out = append(out, rb)
	}
	return out
}

// resolveBinds checks the caller's binds and makes their sources
// symlink-free, so that they mean in the child what they mean here.
func resolveBinds(binds []Bind) ([]resolvedBind, error) {
	var out []resolvedBind
	for _, b := range binds {
		src, err := filepath.EvalSymlinks(b.Source)
		if err != nil {
			return nil, &ConfigError{Field: "Binds", Reason: err.Error()}
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, &ConfigError{Field: "Binds", Reason: err.Error()}
		}
		target := filepath.Clean(b.Target)
		rb := resolvedBind{Bind: Bind{Source: src, Target: target, Writable: b.Writable}, dir: fi.IsDir()}
		for p := filepath.Dir(target); p != "/"; p = filepath.Dir(p) {
			rb.parents = append([]string{p}, rb.parents...)
		}
		rb.lockedFlags = lockedFlags(src)
		out = append(out, rb)
	}
	return out, nil
}

// lockedFlags are the mount flags of the mount holding path that a
// read-only remount of a bind of it must keep (in a user namespace the
// kernel refuses to clear them).
func lockedFlags(path string) uintptr {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	var f uintptr
	for _, m := range []struct{ st, ms uintptr }{
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&m.st != 0 {
			f |= m.ms
		}
	}
	return f
}
