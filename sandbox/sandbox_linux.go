package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/ns"
	"github.com/hutchbox/hutch/rootfs"
)

// Sandbox is a long-lived sandbox: its namespaces, cgroup and root
// filesystem live until Close, and any number of commands run in it, one
// after the other or at once (see New).
type Sandbox struct {
	cfg    Config
	spec   *rootfs.Spec
	limits Limits
	userNS bool

	init   *forkexec.Process
	cg     *cgroup.Manager // the sandbox's group: its limits, parent of every leaf
	lock   *runLock
	name   *nameHolder // the number in cg's name
	ns     []*os.File  // the namespaces a command joins, in setns order
	netNS  *os.File    // nil with NetworkHost
	rootFd int         // the sandbox's root, for the file methods

	mu        sync.Mutex
	closed    bool
	active    sync.WaitGroup
	execNames nameSet // numbers the commands' groups
	listeners map[net.Listener]struct{}
	closeOnce sync.Once
	closeErr  error
}

// ErrClosed is returned for a use of a Sandbox after Close.
var ErrClosed = errors.New("sandbox: closed")

// New starts a sandbox from img whose namespaces, cgroup and root
// filesystem stay up until Close. Nothing runs in it yet but a minimal
// init: Command makes the commands that run there. cfg may be nil.
//
// The context bounds the setup only. On error nothing is left behind.
func New(ctx context.Context, img rootfs.Image, cfg *Config) (*Sandbox, error) {
	if ctx == nil {
		panic("sandbox: nil Context")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	// Validate the sandbox-wide settings through a Cmd that carries them.
	probe := &Cmd{Image: img, Args: []string{"-"}, Limits: cfg.Limits, Env: cfg.Env, Hostname: cfg.Hostname,
		Binds: cfg.Binds, Network: cfg.Network, WritableLayer: cfg.WritableLayer}
	if err := probe.validate(false); err != nil {
		return nil, err
	}
	spec, err := img.Resolve()
	if err != nil {
		return nil, fmt.Errorf("sandbox: image: %w", err)
	}
	limits := cfg.Limits.withDefaults()
	enf, err := enforce(cfg.Limits, false)
	if err != nil {
		return nil, err
	}
	plan, err := probe.plan(spec, stayIdle, nil)
	if err != nil {
		return nil, err
	}
	collectGarbageOnce()
	sb := &Sandbox{cfg: *cfg, spec: spec, limits: limits, userNS: plan.userNS, rootFd: -1, listeners: map[net.Listener]struct{}{}}
	if err := sb.boot(ctx, plan, enf); err != nil {
		sb.teardown()
		plan.undoLayer()
		return nil, err
	}
	return sb, nil
}

// boot starts the sandbox's init and opens what commands join.
func (sb *Sandbox) boot(ctx context.Context, plan *plan, enf *enforcement) error {
	if enf.cgroup {
		sb.name = takeName(&sandboxNames, "sb-"+strconv.Itoa(os.Getpid())+"-")
		group := &cgroup.Config{Name: sb.name.name(), Resources: enf.resources}
		// The group holds the sandbox's limits; each command has a leaf
		// of its own in it. Init stays out: it runs nothing.
		var err error
		if sb.lock, sb.cg, err = newLockedGroup(group, sb.name); err != nil {
			return err
		}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	cfg := plan.config
	cfg.Stdio = [3]*os.File{null, null, null}
	proc, err := forkexec.Start(&cfg)
	if err != nil {
		return setupError(err, nil)
	}
	sb.init = proc
	if plan.userNS {
		if err := writeIDMaps(proc); err != nil {
			return err
		}
	}
	// The namespaces a command joins, user first: the others belong to it.
	// They are opened while init still waits: once set up it is not
	// dumpable, and an unprivileged caller may no longer open them. (Not
	// the cgroup namespace: init has none of its own; each command makes
	// one, rooted at its cgroup.)
	pid := strconv.Itoa(proc.Pid)
	kinds := []string{"mnt", "uts", "ipc", "pid"}
	if sb.cfg.Network != NetworkHost {
		kinds = append(kinds, "net")
	}
	if plan.userNS {
		kinds = append([]string{"user"}, kinds...)
	}
	for _, k := range kinds {
		f, err := os.Open("/proc/" + pid + "/ns/" + k)
		if err != nil {
			return &SetupError{Stage: "open namespace", Path: k, Err: err}
		}
		sb.ns = append(sb.ns, f)
		if k == "net" {
			sb.netNS = f
		}
	}
	if err := proc.Release(ctx); err != nil {
		sb.init = nil
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return setupError(err, nil)
	}
	if plan.userNS {
		// The root, as set up, through a child that joined the sandbox.
		f, err := sb.fromInside(ctx, sb.ns[:2], nil)
		if err != nil {
			return &SetupError{Stage: "open root", Err: err}
		}
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return &SetupError{Stage: "open root", Err: err}
		}
		unix.CloseOnExec(fd)
		sb.rootFd = fd
		return nil
	}
	fd, err := unix.Open("/proc/"+pid+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &SetupError{Stage: "open root", Err: err}
	}
	sb.rootFd = fd
	return nil
}

// Command returns a Cmd that runs args in the sandbox: Run waits for it,
// Start runs it in the background (a server, say) and returns its Process.
// The Cmd's Image and WritableLayer must stay unset; Hostname, Binds and
// Network are the sandbox's. Its Limits apply to that command alone (its
// own cgroup inside the sandbox's); Env adds to the sandbox's Config.Env.
func (sb *Sandbox) Command(args ...string) *Cmd {
	return &Cmd{Args: args, sandbox: sb}
}

// Exec runs args in the sandbox and waits for it, as docker exec does: the
// short form of Command(args...).Run(ctx).
func (sb *Sandbox) Exec(ctx context.Context, args ...string) (*Result, error) {
	return sb.Command(args...).Run(ctx)
}

// start runs c inside the sandbox: a child joins its namespaces and its
// cgroup and forks the command, whose status it reports.
func (sb *Sandbox) start(ctx context.Context, c *Cmd) (*run, error) {
	if c.Image != nil || c.WritableLayer != "" || c.Hostname != "" || len(c.Binds) > 0 || c.Network != NetworkNone {
		return nil, invalid("Cmd", "a sandbox's command takes its image, hostname, binds and network from the sandbox")
	}
	probe := *c
	probe.Image = rootfs.Dir("/")
	if err := probe.validate(false); err != nil {
		return nil, err
	}
	e := *c
	if c2, err := e.withImageConfig(sb.spec); err == nil {
		e = *c2
	} else {
		return nil, err
	}
	e.Env = mergeEnv(sb.cfg.Env, e.Env)
	limits := e.Limits.withDefaults()
	enf, err := enforce(e.Limits, false)
	if err != nil {
		return nil, err
	}
	plan, err := e.joinPlan(sb)
	if err != nil {
		return nil, err
	}
	plan.config.Rlimits = enf.rlimits

	if err := sb.enter(); err != nil {
		return nil, err
	}

	r := &run{ctx: ctx, cmd: &e, limits: limits, enf: enf, inSandbox: true}
	r.cleanup = append(r.cleanup, sb.active.Done)
	if sb.cg != nil {
		r.name = takeName(&sb.execNames, "exec-")
		r.cgroup = &cgroup.Config{Parent: cgroup.DefaultParent + "/" + sb.cgName(), Name: r.name.name(), Resources: enf.resources}
		r.sharedLock = true
	}
	if err := r.start(plan); err != nil {
		return nil, err
	}
	return r, nil
}

func (sb *Sandbox) cgName() string {
	p := sb.cg.Path()
	return p[len("/"+cgroup.DefaultParent+"/"):]
}

// mergeEnv returns base with over's variables added or replacing base's.
func mergeEnv(base, over []string) []string {
	if len(base) == 0 {
		return over
	}
	out := make([]string, 0, len(base)+len(over))
	idx := map[string]int{}
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := splitEnv(kv)
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

func splitEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// enter counts one more user of the sandbox's namespaces, which Close
// waits for (leave with sb.active.Done), or says it is closed.
func (sb *Sandbox) enter() error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return ErrClosed
	}
	sb.active.Add(1)
	return nil
}

// Close kills everything in the sandbox and removes all it created. It
// waits for the commands that were running to end (they are killed) and is
// idempotent and safe to call concurrently with them.
func (sb *Sandbox) Close() error {
	sb.closeOnce.Do(func() {
		sb.mu.Lock()
		sb.closed = true
		for l := range sb.listeners {
			l.Close()
		}
		sb.mu.Unlock()
		sb.closeErr = sb.teardown()
	})
	return sb.closeErr
}

// teardown kills init (and with it the PID namespace), waits for the
// commands, and removes the cgroups and the lock.
func (sb *Sandbox) teardown() error {
	var errs []error
	if sb.init != nil {
		sb.init.Kill()
		if _, err := sb.init.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	sb.active.Wait()
	for _, f := range sb.ns {
		f.Close()
	}
	if sb.rootFd >= 0 {
		unix.Close(sb.rootFd)
		sb.rootFd = -1
	}
	if err := freeGroup(sb.cg, sb.lock, sb.name); err != nil {
		errs = append(errs, err)
	}
	if sb.cfg.WritableLayer != "" {
		removeWorkDir(sb.cfg.WritableLayer + "/work")
	}
	return errors.Join(errs...)
}

// deleteGroup removes a group, killing what is left in it first if need be.
func deleteGroup(m *cgroup.Manager) error {
	if err := m.Delete(); err != nil {
		m.Kill()
		return m.Delete()
	}
	return nil
}

// Dial connects to address on network ("tcp", "tcp4", "tcp6", "udp",
// "udp4", "udp6") from inside the sandbox's network namespace: 127.0.0.1
// is the sandbox's loopback. The socket is made by a short-lived child that
// joined the namespace, so the caller's threads never leave theirs.
func (sb *Sandbox) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if sb.netNS == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	domain, typ, sa, err := sockaddr(network, address)
	if err != nil {
		return nil, err
	}
	f, err := sb.socket(ctx, domain, typ)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A loopback connect completes or fails at once; the context can
	// still cut it short.
	done := make(chan error, 1)
	go func() { done <- unix.Connect(int(f.Fd()), sa) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		f.Close()
		<-done
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: nil, Err: os.NewSyscallError("connect", err)}
	}
	return net.FileConn(f)
}

// socket makes a socket in the sandbox's network namespace.
func (sb *Sandbox) socket(ctx context.Context, domain, typ int) (*os.File, error) {
	join := []*os.File{sb.netNS}
	if sb.userNS {
		join = []*os.File{sb.ns[0], sb.netNS}
	}
	return sb.fromInside(ctx, join, &forkexec.SocketSpec{Domain: domain, Type: typ})
}

// fromInside has a short-lived child join the namespaces and send back a
// descriptor: a new socket, or (sock nil) the root directory.
func (sb *Sandbox) fromInside(ctx context.Context, join []*os.File, sock *forkexec.SocketSpec) (*os.File, error) {
	if err := sb.enter(); err != nil {
		return nil, err
	}
	defer sb.active.Done()

	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "socket-pair"), os.NewFile(uintptr(pair[1]), "socket-pair")
	defer mine.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		theirs.Close()
		return nil, err
	}
	defer null.Close()
	cfg := &forkexec.Config{
		Join:       join,
		Socket:     sock,
		SendRoot:   sock == nil,
		SocketConn: theirs,
		Stdio:      [3]*os.File{null, null, null},
	}
	proc, err := forkexec.Start(cfg)
	theirs.Close()
	if err != nil {
		return nil, err
	}
	if err := proc.Release(ctx); err != nil {
		return nil, err
	}
	proc.Wait()
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(pair[0], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("sandbox: no descriptor came back from the sandbox")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("sandbox: no descriptor came back from the sandbox")
	}
	return os.NewFile(uintptr(fds[0]), "sandbox-fd"), nil
}

// sockaddr resolves a numeric network address for Dial.
func sockaddr(network, address string) (domain, typ int, sa unix.Sockaddr, err error) {
	var ip net.IP
	var port int
	switch network {
	case "tcp", "tcp4", "tcp6":
		a, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return 0, 0, nil, err
		}
		ip, port, typ = a.IP, a.Port, unix.SOCK_STREAM
	case "udp", "udp4", "udp6":
		a, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return 0, 0, nil, err
		}
		ip, port, typ = a.IP, a.Port, unix.SOCK_DGRAM
	default:
		return 0, 0, nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if ip == nil {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip4 := ip.To4(); ip4 != nil {
		s := &unix.SockaddrInet4{Port: port}
		copy(s.Addr[:], ip4)
		return unix.AF_INET, typ, s, nil
	}
	s := &unix.SockaddrInet6{Port: port}
	copy(s.Addr[:], ip.To16())
	return unix.AF_INET6, typ, s, nil
}

// Forward listens on a free port of the host's 127.0.0.1 and forwards each
// connection to port on the sandbox's loopback, what testcontainers calls
// a mapped port. It returns the host address ("127.0.0.1:PORT"). The
// forwarding stops when ctx ends or the sandbox closes.
func (sb *Sandbox) Forward(ctx context.Context, port int) (string, error) {
	if port <= 0 || port > 65535 {
		return "", invalid("port", "%d is not a TCP port", port)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if err := sb.ForwardListener(ctx, l, port); err != nil {
		return "", err
	}
	return l.Addr().String(), nil
}

// ForwardListener forwards each connection accepted on l to port on the
// sandbox's loopback, as Forward does, for a caller that chose its own
// listener (a fixed host port, say). The sandbox closes l when ctx ends or
// the sandbox closes.
func (sb *Sandbox) ForwardListener(ctx context.Context, l net.Listener, port int) error {
	if port <= 0 || port > 65535 {
		l.Close()
		return invalid("port", "%d is not a TCP port", port)
	}
	sb.mu.Lock()
	if sb.closed {
		sb.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	sb.listeners[l] = struct{}{}
	sb.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	target := "127.0.0.1:" + strconv.Itoa(port)
	go func() {
		defer stop()
		defer func() {
			sb.mu.Lock()
			delete(sb.listeners, l)
			sb.mu.Unlock()
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				in, err := sb.Dial(dctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer in.Close()
				splice(c, in)
			}()
		}
	}()
	return nil
}

// splice copies both ways until either side is done.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

// writeIDMaps maps the sandbox's root to the caller's own ids.
func writeIDMaps(p *forkexec.Process) error {
	uid, gid := os.Geteuid(), os.Getegid()
	if err := p.WriteIDMaps(ns.Format(ns.Self(uid)), ns.Format(ns.Self(gid)), true); err != nil {
		return &SetupError{Stage: "write id maps", Err: err}
	}
	return nil
}
