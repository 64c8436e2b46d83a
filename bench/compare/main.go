//go:build linux

// Command compare is the side-by-side benchmark: it runs /bin/true from one
// busybox root filesystem under plain exec, unshare, bubblewrap, crun, runc,
// the hutch CLI and hutch's Go API (sandbox.Run, in this process), and
// writes a markdown table of median latency, runs/s with concurrent workers
// and the ratios between them.
//
// The contenders are measured in the same run and interleaved: every round
// visits each of them in turn (in an order rotated from round to round), so
// that machine noise hits all alike. Each contender is first checked: it
// must run /bin/true with exit 0 and, when it claims isolation, show a PID
// namespace (sh -c 'echo $$' prints a small number). One that fails is
// reported with the reason and never timed.
//
// It is normally started by bench/compare/run, which installs the tools and
// builds the rootfs, the OCI bundle and the hutch CLI:
//
//	compare -rootfs DIR [-bundle DIR] [-hutch BIN] [-rounds N] [-duration D] [-out FILE]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

var (
	flagRounds   = flag.Int("rounds", 5, "rounds over all contenders")
	flagDuration = flag.Duration("duration", 2*time.Second, "length of each concurrent throughput measurement (one per contender per round)")
	flagLatency  = flag.Duration("latency-duration", time.Second, "time spent on sequential single runs per contender per round (at least 5 runs)")
	flagWorkers  = flag.Int("workers", 2, "concurrent workers in the throughput measurement")
	flagIdleRuns = flag.Int("idle-runs", 10, "single runs per contender per round that each follow -idle-gap of idleness (0: none)")
	flagIdleGap  = flag.Duration("idle-gap", 50*time.Millisecond, "idle time before each of the -idle-runs runs")
	flagOut      = flag.String("out", "", "also write the markdown report to `FILE`")
	flagRootfs   = flag.String("rootfs", "", "busybox root filesystem `DIR` (required): /bin/busybox and applet links")
	flagBundle   = flag.String("bundle", "", "OCI bundle `DIR` for runc and crun, its config.json running /bin/true on -rootfs (empty: runc and crun are reported as not run)")
	flagHutch    = flag.String("hutch", "", "hutch CLI `BINARY` (empty: hutch-cli is reported as not run)")
	flagOnly     = flag.String("only", "", "comma-separated contender `NAMES` to measure (default all)")
	flagCommand  = flag.String("command", "", "the command line to show in the report (default this harness's own)")
)

// runTimeout bounds one run of any contender, so that a hung tool fails
// the contender instead of the benchmark.
const runTimeout = 30 * time.Second

// minLatencyRuns is the least number of sequential runs per round.
const minLatencyRuns = 5

// contender is one way of running /bin/true in the rootfs.
type contender struct {
	name string
	// cmdline is what a run executes, for the report.
	cmdline string
	// isolating is set for the sandboxes: the check then also requires a
	// PID namespace.
	isolating bool
	// notes about the setup, for the report.
	notes []string
	// enter, when set, runs on a fresh goroutine locked to its OS thread
	// before that goroutine calls check or run; the thread is thrown away
	// afterwards. crun uses it for a private mount namespace.
	enter func() error
	// check runs "sh -c 'echo $$'" the same way as run runs /bin/true and
	// returns what it printed.
	check func(ctx context.Context) (string, error)
	// run runs /bin/true once.
	run func(ctx context.Context) error
	// cleanup, when set, runs once at the end.
	cleanup func()

	// Results.
	err         error // why the contender produced no numbers
	lat         []time.Duration
	idleLat     []time.Duration // runs that followed -idle-gap of idleness
	thr         []float64
	runs, fails int
	firstFail   error
	harnessPeak int64 // KiB: the harness's own peak RSS during its throughput runs
	harnessBase int64 // KiB: the harness's RSS when those started
	mu          sync.Mutex
}

// record counts a run and, when it succeeded and lat is set, adds its
// latency d to *lat (c.lat or c.idleLat).
func (c *contender) record(d time.Duration, err error, lat *[]time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs++
	if err != nil {
		c.fails++
		if c.firstFail == nil {
			c.firstFail = err
		}
		return
	}
	if lat != nil {
		*lat = append(*lat, d)
	}
}

// onThread runs fn on a new goroutine. When c.enter is set the goroutine
// is locked to its thread, enters first, and the thread exits with it, so
// that nothing entered leaks into the rest of the process.
func (c *contender) onThread(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		if c.enter != nil {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if err := c.enter(); err != nil {
				errc <- err
				return
			}
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s -rootfs DIR [flags]\n\nFlags:\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *flagRootfs == "" || flag.NArg() > 0 || *flagRounds < 1 || *flagWorkers < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "compare: needs root (runc, crun, unshare and hutch all create namespaces)")
		os.Exit(1)
	}
	root, err := filepath.Abs(*flagRootfs)
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "bin/busybox"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: -rootfs: %v\n", err)
		os.Exit(1)
	}

	all := contenders(root)
	var cs []*contender
	for _, c := range all {
		if *flagOnly == "" || slices.Contains(strings.Split(*flagOnly, ","), c.name) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		fmt.Fprintf(os.Stderr, "compare: -only %q matches none of the contenders\n", *flagOnly)
		os.Exit(2)
	}

	// Check every contender (which also warms it up) before timing any.
	for _, c := range cs {
		if c.err == nil {
			c.err = verify(c)
		}
		status := "ok"
		if c.err != nil {
			status = "FAILED: " + c.err.Error()
		}
		logf("check %-10s %s", c.name, status)
	}

	start := time.Now()
	for r := range *flagRounds {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			if c.err != nil {
				continue
			}
			latencyBatch(c, *flagLatency)
			idleBatch(c, *flagIdleRuns, *flagIdleGap)
			throughputBatch(c, *flagWorkers, *flagDuration)
			if c.err == nil && c.runs > 0 && c.fails == c.runs {
				c.err = fmt.Errorf("every timed run failed: %v", c.firstFail)
			}
		}
		logf("round %d/%d done (%s)", r+1, *flagRounds, time.Since(start).Round(time.Second))
	}
	for _, c := range cs {
		if c.cleanup != nil {
			c.cleanup()
		}
	}

	idleRSS, idleErr := idleSandboxesPeakRSS(root)
	report := render(cs, idleRSS, idleErr)
	fmt.Print(report)
	if *flagOut != "" {
		err := os.MkdirAll(filepath.Dir(*flagOut), 0o755)
		if err == nil {
			err = os.WriteFile(*flagOut, []byte(report), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			os.Exit(1)
		}
		logf("wrote %s", *flagOut)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "compare: "+format+"\n", a...)
}

// contenders lists everything measured, in the order of the table.
func contenders(root string) []*contender {
	trueBin := filepath.Join(root, "bin/true")
	cs := []*contender{
		{
			name:    "plain exec",
			cmdline: "os/exec of " + trueBin + " (busybox, static)",
			notes:   []string{"no isolation: the floor"},
			check: func(ctx context.Context) (string, error) {
				return execTool(ctx, []string{filepath.Join(root, "bin/sh"), "-c", "echo $$"})
			},
			run: func(ctx context.Context) error {
				_, err := execTool(ctx, []string{trueBin})
				return err
			},
		},
		externalTool("unshare", "pid, mount, ipc, uts, net + chroot; no /proc, /dev, cgroup or seccomp",
			[]string{"unshare", "--pid", "--fork", "--mount", "--ipc", "--uts", "--net", "chroot", root}),
		externalTool("bubblewrap", "--unshare-all (user, pid, mount, ipc, uts, net, cgroup), new /proc, /dev, tmpfs /tmp; no cgroup limits",
			[]string{"bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", root, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"}),
		ociRuntime("crun", root),
		ociRuntime("runc", root),
		hutchCLI(root),
		hutchAPI(root),
	}
	cs = append(cs, hutchPool(root))
	return cs
}

// execTool runs argv, with stdout and stderr into one buffer, and returns
// the output.
func execTool(ctx context.Context, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %v%s", shellJoin(argv), err, outputSuffix(out.String()))
	}
	return out.String(), nil
}

func outputSuffix(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	if len(out) > 300 {
		out = out[:300] + "..."
	}
	return ": " + strings.ReplaceAll(out, "\n", " | ")
}

// externalTool is a contender that runs prefix + /bin/true.
func externalTool(name, note string, prefix []string) *contender {
	c := &contender{
		name:      name,
		cmdline:   shellJoin(append(slices.Clone(prefix), "/bin/true")),
		isolating: true,
		notes:     []string{note},
		check: func(ctx context.Context) (string, error) {
			return execTool(ctx, append(slices.Clone(prefix), "/bin/sh", "-c", "echo $$"))
		},
		run: func(ctx context.Context) error {
			_, err := execTool(ctx, append(slices.Clone(prefix), "/bin/true"))
			return err
		},
	}
	if _, err := exec.LookPath(prefix[0]); err != nil {
		c.err = fmt.Errorf("not installed: %v", err)
	}
	return c
}

// ociRuntime is runc or crun running the bundle of -bundle under a fresh
// container id per run. Its check uses a copy of the bundle whose process
// is sh -c 'echo $$'.
func ociRuntime(name, root string) *contender {
	bundle := *flagBundle
	var seq atomic.Int64
	id := func() string { return fmt.Sprintf("hbench-%d-%d", os.Getpid(), seq.Add(1)) }
	runIn := func(ctx context.Context, b string) (string, error) {
		cid := id()
		out, err := execTool(ctx, []string{name, "run", "--bundle", b, cid})
		if err != nil {
			// "run" deletes the container when it ends; after a failure
			// it may not have.
			execTool(context.Background(), []string{name, "delete", "-f", cid})
		}
		return out, err
	}
	c := &contender{
		name:      name,
		cmdline:   name + " run --bundle " + bundle + " <unique id>",
		isolating: true,
		notes:     []string{"runtime spec defaults (`" + name + " spec`): pid, net, ipc, uts, mount ns, a cgroup per run, seccomp off, read-only root"},
	}
	c.run = func(ctx context.Context) error {
		_, err := runIn(ctx, bundle)
		return err
	}
	c.cleanup = func() { sweepContainers(c) }
	if _, err := exec.LookPath(name); err != nil {
		c.err = fmt.Errorf("not installed: %v", err)
		return c
	}
	if bundle == "" {
		c.err = errors.New("not run: no -bundle given")
		return c
	}
	checkBundle, err := checkBundle(bundle, root)
	if err != nil {
		c.err = err
		return c
	}
	c.check = func(ctx context.Context) (string, error) {
		return runIn(ctx, checkBundle)
	}
	// Debian's crun 1.8.1 refuses hybrid cgroups ("cgroups in hybrid mode
	// not supported, drop all controllers from cgroupv2"); verify then
	// retries it with crunPrivateMounts as enter.
	return c
}

// crunPrivateMounts moves the calling thread (locked by the caller) into a
// private mount namespace without /sys/fs/cgroup/unified, so that crun sees
// cgroup v1 only. The host's mounts are untouched.
func crunPrivateMounts() error {
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := syscall.Unmount("/sys/fs/cgroup/unified", syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("umount /sys/fs/cgroup/unified: %w", err)
	}
	return nil
}

// checkBundle writes a copy of bundle's config.json, with the process
// replaced by sh -c 'echo $$' and the root made absolute, next to bundle.
func checkBundle(bundle, root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", fmt.Errorf("bundle config.json: %w", err)
	}
	proc, _ := spec["process"].(map[string]any)
	rootSpec, _ := spec["root"].(map[string]any)
	if proc == nil || rootSpec == nil {
		return "", errors.New("bundle config.json: no process or root")
	}
	if args, _ := proc["args"].([]any); len(args) != 1 || args[0] != "/bin/true" {
		return "", fmt.Errorf("bundle config.json: process.args is %v, want [/bin/true]", proc["args"])
	}
	proc["args"] = []string{"/bin/sh", "-c", "echo $$"}
	if p, _ := rootSpec["path"].(string); !filepath.IsAbs(p) {
		rootSpec["path"] = filepath.Join(bundle, p)
	}
	dir := strings.TrimSuffix(bundle, "/") + "-check"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// sweepContainers deletes any container of this run that a runtime left.
func sweepContainers(c *contender) {
	if c.check == nil {
		return
	}
	c.onThread(func() {
		out, err := execTool(context.Background(), []string{c.name, "list", "-q"})
		if err != nil {
			return
		}
		prefix := fmt.Sprintf("hbench-%d-", os.Getpid())
		for _, id := range strings.Fields(out) {
			if strings.HasPrefix(id, prefix) {
				execTool(context.Background(), []string{c.name, "delete", "-f", id})
			}
		}
	})
}

func hutchCLI(root string) *contender {
	bin := *flagHutch
	prefix := []string{bin, "run", "--image", root, "--"}
	c := externalTool("hutch-cli", "hutch run: pid, mount, ipc, uts, net, cgroup ns; overlay on the rootfs with a tmpfs upper; one process start per run", prefix)
	if bin == "" {
		c.err = errors.New("not run: no -hutch given")
	}
	return c
}

// hutchPool runs through a sandbox.Pool: sandboxes set up ahead by the
// pool's goroutines, each serving runs as long as they leave it clean.
func hutchPool(root string) *contender {
	c := &contender{
		name:      "hutch-pool",
		cmdline:   `pool.Run(ctx, &sandbox.Cmd{Args: []string{"/bin/true"}}) on sandbox.NewPool(rootfs.Dir(ROOTFS), 4, nil), in the harness process`,
		isolating: true,
		notes:     []string{"same isolation and fresh state per run as hutch-api (a fresh cgroup and IPC namespace, PID 2); a sandbox is set up ahead by the pool's goroutines, on the same 2 cores, and serves the next run when its run left nothing behind"},
	}
	pool, err := sandbox.NewPool(rootfs.Dir(root), 4, nil)
	if err != nil {
		c.err = err
		return c
	}
	run := func(ctx context.Context, args []string) (*sandbox.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, runTimeout)
		defer cancel()
		res, err := pool.Run(ctx, &sandbox.Cmd{Args: args})
		if err != nil {
			return nil, err
		}
		if res.Status != sandbox.OK {
			return res, fmt.Errorf("pool.Run %q: status %v, exit code %d%s", args, res.Status, res.ExitCode, outputSuffix(string(res.Stderr)))
		}
		return res, nil
	}
	c.check = func(ctx context.Context) (string, error) {
		res, err := run(ctx, []string{"/bin/sh", "-c", "echo $$"})
		if res == nil {
			return "", err
		}
		return string(res.Stdout), err
	}
	c.run = func(ctx context.Context) error {
		_, err := run(ctx, []string{"/bin/true"})
		return err
	}
	c.cleanup = func() {
		pool.Close()
		st := pool.Stats()
		c.notes = append(c.notes, fmt.Sprintf("%d of its %d runs were served by a sandbox an earlier run had left clean", st.Reused, st.Runs))
	}
	return c
}

func hutchAPI(root string) *contender {
	img := rootfs.Dir(root)
	run := func(ctx context.Context, args []string) (*sandbox.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, runTimeout)
		defer cancel()
		res, err := sandbox.Run(ctx, img, args, sandbox.Limits{})
		if err != nil {
			return nil, err
		}
		if res.Status != sandbox.OK {
			return res, fmt.Errorf("sandbox.Run %q: status %v, exit code %d%s", args, res.Status, res.ExitCode, outputSuffix(string(res.Stderr)))
		}
		return res, nil
	}
	return &contender{
		name:      "hutch-api",
		cmdline:   `sandbox.Run(ctx, rootfs.Dir(ROOTFS), []string{"/bin/true"}, sandbox.Limits{}) in the harness process`,
		isolating: true,
		notes:     []string{"same isolation as hutch-cli, no process start of its own"},
		check: func(ctx context.Context) (string, error) {
			res, err := run(ctx, []string{"/bin/sh", "-c", "echo $$"})
			if res == nil {
				return "", err
			}
			return string(res.Stdout), err
		},
		run: func(ctx context.Context) error {
			_, err := run(ctx, []string{"/bin/true"})
			return err
		},
	}
}

// verify checks that c works and, if it claims to, isolates; then warms it
// up with a few runs of /bin/true.
func verify(c *contender) error {
	if c.check == nil {
		return errors.New("no check")
	}
	err := verifyOnce(c)
	if err != nil && c.name == "crun" {
		// Retry in a private mount namespace without the cgroup v2
		// hierarchy: this machine's hybrid layout is what crun refuses.
		c.enter = crunPrivateMounts
		if err2 := verifyOnce(c); err2 != nil {
			c.enter = nil
			return fmt.Errorf("%v; and in a private mount namespace without /sys/fs/cgroup/unified: %v", err, err2)
		}
		c.notes = append(c.notes, "run from a private mount namespace without /sys/fs/cgroup/unified, as Debian's crun refuses hybrid cgroups directly ("+reason(err)+"); the host's mounts are untouched")
		return nil
	}
	return err
}

// reason is the last part of an error message, e.g. a tool's own words.
func reason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return strings.TrimSpace(s)
}

func verifyOnce(c *contender) error {
	var err error
	if terr := c.onThread(func() {
		ctx := context.Background()
		var out string
		out, err = c.check(ctx)
		if err != nil {
			err = fmt.Errorf("check: %w", err)
			return
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(out))
		switch {
		case perr != nil:
			err = fmt.Errorf("check: sh -c 'echo $$' printed %q", out)
			return
		case c.isolating && pid > 10:
			err = fmt.Errorf("check: no PID namespace: sh -c 'echo $$' printed %d", pid)
			return
		}
		for range 3 {
			if err = c.run(ctx); err != nil {
				err = fmt.Errorf("/bin/true: %w", err)
				return
			}
		}
	}); terr != nil {
		return terr
	}
	return err
}

// latencyBatch times sequential single runs for about d.
func latencyBatch(c *contender, d time.Duration) {
	err := c.onThread(func() {
		start := time.Now()
		for i := 0; i < minLatencyRuns || time.Since(start) < d; i++ {
			t0 := time.Now()
			err := c.run(context.Background())
			c.record(time.Since(t0), err, &c.lat)
		}
	})
	if err != nil {
		c.err = err
	}
}

// idleBatch times n single runs, each after the harness and its runs have
// been idle for gap: the pattern of a judge between submissions or a test
// suite between tests, in which kernel paths that are fast only while they
// run often (RCU-synchronized ones) show.
func idleBatch(c *contender, n int, gap time.Duration) {
	err := c.onThread(func() {
		for range n {
			time.Sleep(gap)
			t0 := time.Now()
			err := c.run(context.Background())
			c.record(time.Since(t0), err, &c.idleLat)
		}
	})
	if err != nil {
		c.err = err
	}
}

// throughputBatch runs workers loops of c.run for d and records runs/s and
// the harness's own peak RSS meanwhile.
func throughputBatch(c *contender, workers int, d time.Duration) {
	runtime.GC()
	resetPeakRSS()
	base, _ := procStatusKiB("VmRSS")
	var ok atomic.Int64
	var wg sync.WaitGroup
	var enterErr atomic.Pointer[error]
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Go(func() {
			if err := c.onThread(func() {
				for time.Now().Before(deadline) {
					err := c.run(context.Background())
					c.record(0, err, nil)
					if err == nil {
						ok.Add(1)
					}
				}
			}); err != nil {
				enterErr.Store(&err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if p := enterErr.Load(); p != nil {
		c.err = *p
		return
	}
	c.thr = append(c.thr, float64(ok.Load())/elapsed.Seconds())
	if peak, err := procStatusKiB("VmHWM"); err == nil && peak > c.harnessPeak {
		c.harnessPeak, c.harnessBase = peak, base
	}
}

// resetPeakRSS resets this process's VmHWM to its current RSS.
func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// procStatusKiB reads a "kB" field of /proc/self/status.
func procStatusKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/self/status: no %s", field)
}

// idleSandboxesPeakRSS is the peak RSS of the hutch process while it holds
// 100 idle sandboxes.
//
// idleSandboxes is how many idle sandboxes the memory measurement holds.
const idleSandboxes = 100

// idleSandboxesPeakRSS starts 100 long-lived sandboxes (sandbox.New) on
// the rootfs, each with "sleep 3600" running, and returns the peak
// resident size of this process while it holds them all, in KiB. What
// they take of the machine (their processes, the kernel's namespaces,
// mounts and cgroups) it leaves in idleMemory.
func idleSandboxesPeakRSS(root string) (int64, error) {
	ctx := context.Background()
	img := rootfs.Dir(root)
	// One sandbox first, closed again: what the first one makes once (the
	// parent cgroups, caches) is not an idle sandbox's.
	sb, err := sandbox.New(ctx, img, nil)
	if err != nil {
		return 0, err
	}
	sb.Close()
	resetPeakRSS()
	before, beforeErr := readMeminfo()
	var sbs []*sandbox.Sandbox
	defer func() {
		for _, sb := range sbs {
			sb.Close()
		}
	}()
	for range idleSandboxes {
		sb, err := sandbox.New(ctx, img, nil)
		if err != nil {
			return 0, err
		}
		sbs = append(sbs, sb)
		if _, err := sb.Command("sleep", "3600").Start(ctx); err != nil {
			return 0, err
		}
	}
	// Objects freed after an RCU grace period are gone by now.
	time.Sleep(200 * time.Millisecond)
	if after, err := readMeminfo(); err == nil && beforeErr == nil {
		for _, f := range idleMemoryFields {
			idleMemory = append(idleMemory, (before.diff(after, f.name)*f.sign)/idleSandboxes)
		}
	}
	return procStatusKiB("VmHWM")
}

// idleMemoryFields are the /proc/meminfo figures reported per idle
// sandbox: what the kernel holds for it, and the machine's available
// memory (sign -1: it falls).
var idleMemoryFields = []struct {
	name string
	sign int64
}{
	{"Slab", 1},        // namespaces, mounts, inodes and dentries, cgroups, sockets
	{"KernelStack", 1}, // of its processes
	{"PageTables", 1},  // of its processes
	{"Percpu", 1},      // cgroup and network statistics
	{"Shmem", 1},       // its tmpfs files
	{"MemAvailable", -1},
}

// idleMemory is, for each of idleMemoryFields, how much each idle sandbox
// took, in KiB.
var idleMemory []int64

// meminfo is a reading of /proc/meminfo, in KiB.
type meminfo map[string]int64

func (m meminfo) diff(after meminfo, name string) int64 { return after[name] - m[name] }

// readMeminfo reads /proc/meminfo.
func readMeminfo() (meminfo, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	m := meminfo{}
	for line := range strings.Lines(string(b)) {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
			m[name] = n
		}
	}
	if _, ok := m["MemAvailable"]; !ok {
		return nil, errors.New("no MemAvailable in /proc/meminfo")
	}
	return m, nil
}

// shellJoin quotes argv for a shell, for the report.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?;&|<>()`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
