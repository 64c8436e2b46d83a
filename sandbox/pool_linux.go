package sandbox

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/ns"
	"github.com/hutchbox/hutch/rootfs"
)

// Pool runs commands in sandboxes it sets up ahead of time, so that a run
// pays only for starting its command: the clone, the namespaces and the
// mounts of its sandbox were made while the caller was busy elsewhere.
//
// A pooled run starts from a state exactly as fresh as a cold run's, and
// gets the same Result and verdict as Run for the same program. A sandbox
// serves another run only when its run left nothing behind (no process,
// no file in its writable directories, no socket; its IPC objects and
// cgroup are the run's own and go with it), and is thrown away otherwise
// (see NewPool).
type Pool struct {
	tmpl  Cmd
	spec  *rootfs.Spec
	ready chan *pooledSandbox

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error // the last failure to prepare a sandbox

	// mu orders a run's end with its preparing goroutine's giving up on
	// the sandbox (orphan) when the pool closes.
	mu sync.Mutex

	runs, reused atomic.Int64 // see PoolStats
}

// Stats returns the pool's counts so far.
func (p *Pool) Stats() PoolStats {
	return PoolStats{Runs: p.runs.Load(), Reused: p.reused.Load()}
}

// pooledSandbox is a sandbox set up and waiting for its command.
type pooledSandbox struct {
	proc *forkexec.Process
	plan *plan
	// cg is the run's fresh cgroup, made ahead. On v1 the command moves
	// itself in as a cold run's does, through the tasks files, which takes
	// no global lock. On v2 a reusable sandbox's command is born in it
	// (clone3), as a cold run's is; the init of a sandbox that serves one
	// run is placed in it ahead (initInGroup): a process can only join
	// there through cgroup.procs, whose global lock waits for an RCU grace
	// period, milliseconds a pooled run should not pay. (Init is set up
	// before it joins, so the setup is not counted; its command is then
	// born in the group, by vfork.)
	cg          *cgroup.Manager
	initInGroup bool
	// lock and name are the group's, kept from one run's group to the
	// next's.
	lock *runLock
	name *nameHolder
	// netns is the sandbox's network namespace, when it is its own
	// (checked before each reuse, through socks, and offered to later
	// sandboxes at the end).
	netns *os.File
	socks *ns.SocketCounts
	// reusable: the sandbox may serve several runs (plan.config.Reusable).
	// Each run's end tells the goroutine that prepared it, through done,
	// whether it does; orphan says that goroutine is gone (the pool
	// closed), and the run's end throws the sandbox away itself.
	reusable bool
	done     chan bool
	orphan   bool
	// served counts the runs the sandbox was given.
	served int
}

// NewPool starts keeping size sandboxes of img ready. tmpl, which may be
// nil, holds what every run of the pool shares: Hostname, Binds, Network,
// Credential, Syscalls and Limits.Disk, copied (later changes to tmpl do
// not reach the pool); the rest of it is ignored. The
// sandboxes are prepared in the background, one goroutine each.
//
// A sandbox serves another run only when its run left it as its setup
// did: init kills and reaps whatever the command left running, detaches
// the run's own binds, and checks that the sandbox's writable filesystems
// (the overlay's upper directory and /tmp, /dev/shm) have as many free
// blocks and inodes as after the setup; the pool checks that no socket is
// left in the network namespace. Every run gets a fresh cgroup and IPC
// namespace, and its command is PID 2. Sandboxes are reused only for a
// root caller whose template does not run commands as uid 0 (see
// Stats); otherwise each serves one run.
func NewPool(img rootfs.Image, size int, tmpl *Cmd) (*Pool, error) {
	if size <= 0 {
		return nil, invalid("size", "%d is not positive", size)
	}
	t := Cmd{}
	if tmpl != nil {
		t = Cmd{Hostname: tmpl.Hostname, Binds: slices.Clone(tmpl.Binds), Network: tmpl.Network,
			Credential: tmpl.Credential.clone(), Syscalls: tmpl.Syscalls.clone(), Limits: Limits{Disk: tmpl.Limits.Disk}}
	}
	t.Image, t.Args = img, []string{"-"}
	if err := t.validate(false); err != nil {
		return nil, err
	}
	spec, err := img.Resolve()
	if err != nil {
		return nil, err
	}
	// Check the shared settings once, up front, as a run would.
	pl, err := t.plan(spec, awaitCommand, nil)
	if err != nil {
		return nil, err
	}
	if pl.netns != nil {
		ns.RecycleNetwork(pl.netns)
	}
	collectGarbageOnce()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{tmpl: t, spec: spec, ready: make(chan *pooledSandbox), ctx: ctx, cancel: cancel}
	for range size {
		p.wg.Add(1)
		go p.prepareLoop()
	}
	return p, nil
}

// prepareLoop keeps one sandbox ready until the pool closes: a new one
// each time the last was taken, or the same one again once its run left
// it clean.
func (p *Pool) prepareLoop() {
	defer p.wg.Done()
	backoff := 10 * time.Millisecond
	for p.ctx.Err() == nil {
		ps, err := p.prepare()
		if err != nil {
			p.errMu.Lock()
			p.err = err
			p.errMu.Unlock()
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		for {
			select {
			case p.ready <- ps:
			case <-p.ctx.Done():
				ps.discard()
				return
			}
			if !ps.reusable {
				break
			}
			var reuse bool
			select {
			case reuse = <-ps.done:
			case <-p.ctx.Done():
				p.mu.Lock()
				select {
				case reuse = <-ps.done:
				default:
					ps.orphan = true
				}
				p.mu.Unlock()
				if reuse {
					ps.discard()
				}
				return
			}
			if !reuse {
				break
			}
			if err := p.renew(ps); err != nil {
				break
			}
		}
	}
}

// prepare sets up one sandbox, to the point where it waits for a command.
func (p *Pool) prepare() (*pooledSandbox, error) {
	pl, err := p.tmpl.plan(p.spec, awaitCommand, nil)
	if err != nil {
		return nil, err
	}
	null, err := devNull()
	if err != nil {
		return nil, err
	}
	cfg := pl.config
	cfg.Stdio = [3]*os.File{null, null, null}
	v2 := cgroup.DetectMode() == cgroup.V2
	// On v2 the init of a sandbox serving one run joins the run's group
	// (initInGroup), where the OOM killer may choose it: it must not share
	// the zygote's memory.
	cfg.OwnMemory = v2 && !cfg.Reusable
	proc, err := forkexec.Start(&cfg)
	if err != nil {
		if pl.netns != nil {
			pl.netns.Close()
		}
		return nil, setupError(err, nil)
	}
	ps := &pooledSandbox{proc: proc, plan: pl, reusable: cfg.Reusable, netns: pl.takeNetns(proc.Pid)}
	if ps.reusable {
		ps.done = make(chan bool, 1)
	}
	if pl.userNS {
		if err := writeIDMaps(proc); err != nil {
			ps.discard()
			return nil, err
		}
	}
	if err := proc.Release(p.ctx); err != nil {
		ps.discard()
		return nil, setupError(err, nil)
	}
	if ps.reusable && ps.netns != nil {
		// Opened once init is in the namespace it joined, if it joined
		// one. Without them, the sandbox serves one run (see renew).
		ps.socks, _ = ns.OpenSocketCounts(proc.Pid)
	}
	if err := ps.newGroup(); err != nil {
		ps.discard()
		return nil, err
	}
	return ps, nil
}

// newGroup makes the fresh cgroup of the sandbox's next run. The sandbox
// keeps the group's name and the lock that names it from one run to the
// next: only the group itself is made again.
func (ps *pooledSandbox) newGroup() error {
	if cgroupErr() != nil {
		return nil
	}
	var err error
	cfg := &cgroup.Config{NoFreezer: true}
	if ps.name == nil {
		ps.name = takeRunName()
		cfg.Name = ps.name.name()
		ps.lock, ps.cg, err = newLockedGroup(cfg, ps.name)
	} else {
		cfg.Name = ps.name.name()
		ps.cg, err = newGroup(cfg, ps.name)
	}
	if err != nil {
		return err
	}
	if ps.cg.Mode() != cgroup.V1 && !ps.reusable {
		// On v1 the writer of cgroup.procs holds its lock through the
		// grace period and every fork on the machine waits, a running
		// pooled command's included (13.7 ms after 50 ms idle, against
		// 1.8 ms): there the command joins instead.
		if err := ps.cg.AddProc(ps.proc.Pid); err != nil {
			return &SetupError{Stage: "join cgroup", Err: err}
		}
		ps.initInGroup = true
	}
	return nil
}

// renew readies a sandbox whose run left it clean for another run: its
// network namespace must hold no socket, and the run gets a fresh cgroup.
// On failure the sandbox is thrown away.
func (p *Pool) renew(ps *pooledSandbox) error {
	if ps.netns != nil && (ps.socks == nil || !ps.socks.Zero()) {
		ps.discard()
		return errors.New("sandbox: a socket was left in the network namespace")
	}
	if err := ps.newGroup(); err != nil {
		ps.discard()
		return err
	}
	return nil
}

// end is called once a run of ps is over, with the run's cgroup, which it
// removes: reuse says ps may serve another run. A sandbox that may not, or
// whose preparing goroutine is gone, is thrown away.
func (p *Pool) end(ps *pooledSandbox, reuse bool, cg *cgroup.Manager) {
	if !reuse {
		ps.proc.Close() // the sandbox's processes go before their group
	}
	if cg != nil && deleteGroup(cg) != nil {
		ps.name.markStale() // the group may remain: its name is not for reuse
		reuse = false
	}
	if ps.reusable {
		p.mu.Lock()
		orphan := ps.orphan
		if !orphan {
			ps.done <- reuse
		}
		p.mu.Unlock()
		if reuse && !orphan {
			return
		}
	}
	ps.discard()
}

// discard kills a sandbox that will not be used and removes its cgroup,
// its lock, and gives back its name.
func (ps *pooledSandbox) discard() {
	ps.proc.Close()
	ps.closeNetns()
	freeGroup(ps.cg, ps.lock, ps.name)
	ps.cg, ps.lock, ps.name = nil, nil, nil
}

// closeNetns offers the network namespace of a sandbox whose init has been
// reaped to later runs, when it is provably empty.
func (ps *pooledSandbox) closeNetns() {
	if ps.socks != nil {
		ps.socks.Close()
		ps.socks = nil
	}
	offerNetns(ps.netns, ps.proc)
	ps.netns = nil
}

// Run runs c in one of the pool's sandboxes, as c.Run would in a fresh
// one, and waits for it. c's Image, Hostname, Network, Credential,
// Syscalls and WritableLayer must be unset: they are the pool's. c's Binds
// are added to the pool's for this run alone (root callers only; a bind
// target's parent directory must exist). It waits for a sandbox to be
// ready as long as ctx allows. In a pool whose sandboxes serve several
// runs (see NewPool), Run waits in poll(2), which blocks its goroutine's
// thread, as os/exec's Wait does: a busy pool of size N takes up to N
// threads.
func (p *Pool) Run(ctx context.Context, c *Cmd) (*Result, error) {
	if ctx == nil {
		panic("sandbox: nil Context")
	}
	if c.Image != nil || c.Hostname != "" || c.Network != NetworkNone ||
		c.Credential != nil || c.Syscalls != nil || c.WritableLayer != "" || c.sandbox != nil {
		return nil, invalid("Cmd", "a pooled command takes its image, hostname, network, credential and filter from the pool")
	}
	e := *c
	e.Image = p.tmpl.Image
	e.Hostname, e.Network, e.Credential, e.Syscalls = p.tmpl.Hostname, p.tmpl.Network, p.tmpl.Credential, p.tmpl.Syscalls
	e.Limits.Disk = p.tmpl.Limits.Disk
	cmd, limits, enf, err := e.prepare(p.spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ps *pooledSandbox
	select {
	case ps = <-p.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.ctx.Done():
		return nil, ErrClosed
	}
	p.runs.Add(1)
	if ps.served > 0 {
		p.reused.Add(1)
	}
	ps.served++
	r := &run{ctx: ctx, cmd: cmd, limits: limits, enf: enf, pooled: ps}
	// The group is the run's; its end removes it (and throws a failed
	// run's sandbox away).
	r.cg, ps.cg = ps.cg, nil
	r.cleanup = append(r.cleanup, func() { p.end(ps, r.reuse, r.cg) })
	if r.cg != nil {
		// Where init is in the group too: one more task than the command's.
		res := enf.resources
		if res.Pids != nil && ps.initInGroup {
			pids := *res.Pids + 1
			res.Pids = &pids
		}
		if err := r.cg.Set(res); err != nil {
			r.undo()
			return nil, &SetupError{Stage: "set cgroup limits", Err: err}
		}
	}
	if err := r.start(ps.plan); err != nil {
		return nil, err
	}
	return r.wait()
}

// launchPooled gives the pooled sandbox its command and waits until it
// has been executed.
func (r *run) launchPooled(stdio [3]*os.File, cgProcs []*os.File, cgDir *os.File) error {
	ps := r.pooled
	r.proc = ps.proc
	binds, err := treeBinds(r.cmd.Binds)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range binds {
			b.Tree.Close()
		}
	}()
	env, pathEnv := withPath(r.cmd.Env)
	cmd := &forkexec.Command{
		Binds:       binds,
		Path:        lookPath(r.cmd.Args[0], pathEnv),
		Argv:        r.cmd.Args,
		Env:         env,
		Dir:         r.cmd.Dir,
		Stdio:       stdio,
		Rlimits:     r.enf.rlimits,
		CgroupProcs: cgProcs,
		CgroupDir:   cgDir,
	}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	r.startTime = time.Now()
	if err := ps.proc.Run(r.ctx, cmd); err != nil {
		if r.ctx.Err() != nil && errors.Is(err, r.ctx.Err()) {
			return err
		}
		return r.setupError(err)
	}
	return nil
}

// Err returns the last error met preparing a sandbox, if any: a pool whose
// sandboxes cannot be set up keeps trying, and its Run waits.
func (p *Pool) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// Close stops preparing sandboxes and throws away those ready. Runs in
// progress go on to their end. It is idempotent.
func (p *Pool) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// treeBinds clones each bind's source as a detached mount tree with its
// flags set, ready for a pooled sandbox's init to attach.
func treeBinds(binds []Bind) ([]forkexec.TreeBind, error) {
	resolved, err := resolveBinds(binds)
	if err != nil {
		return nil, err
	}
	var out []forkexec.TreeBind
	fail := func(err error) ([]forkexec.TreeBind, error) {
		for _, b := range out {
			b.Tree.Close()
		}
		return nil, err
	}
	for _, b := range resolved {
		fd, err := unix.OpenTree(unix.AT_FDCWD, b.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return fail(invalid("Binds", "a pooled run's own binds need root (open_tree: %v)", err))
			}
			return fail(&SetupError{Stage: "clone bind source", Path: b.Source, Err: err})
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
		if !b.Writable {
			attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			unix.Close(fd)
			return fail(&SetupError{Stage: "restrict bind", Path: b.Source, Err: err})
		}
		out = append(out, forkexec.TreeBind{Tree: os.NewFile(uintptr(fd), b.Source), Target: b.Target, Dir: b.dir})
	}
	return out, nil
}
