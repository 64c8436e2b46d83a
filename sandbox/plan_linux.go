package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/internal/seccomp"
	"github.com/hutchbox/hutch/internal/state"
	"github.com/hutchbox/hutch/ns"
	"github.com/hutchbox/hutch/rootfs"
)

// oldRootName is where the host's root sits inside the new root between
// pivot_root and its detach.
const oldRootName = ".hutch-old-root"

// devices are bound from the host into the sandbox's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Paths of /proc hidden from the command, as runc hides them: files get
// /dev/null bound over them, directories an empty read-only tmpfs.
var (
	maskedProcFiles = []string{"kcore", "keys", "timer_list", "timer_stats", "sched_debug", "latency_stats", "interrupts", "sysrq-trigger"}
	maskedProcDirs  = []string{"acpi", "asound", "scsi"}
	// readOnlyProc are bound onto themselves read-only.
	readOnlyProc = []string{"sys", "bus", "fs", "irq"}
)

// plan is a run's prepared child configuration, without its stdio.
type plan struct {
	config forkexec.Config
	// userNS: the sandbox has its own user namespace, root inside mapped
	// to the caller's uid outside.
	userNS bool
	// filter backs config.Seccomp, or split config.InitSeccomp and
	// config.Seccomp: they must stay alive until the clone.
	filter *seccomp.Program
	split  *splitFilter
	// netns is a cached network namespace the child joins (config.Join)
	// instead of making one; recycleNet says the run's network namespace,
	// cached or new, may be cached once the run is over.
	netns      *os.File
	recycleNet bool
	// layer is the upper and work directories the plan made in the Cmd's
	// WritableLayer, if it has one (see undoLayer).
	layer [2]string
}

// undoLayer leaves the Cmd's writable layer as the plan found it (empty),
// for a run that failed before its command ran.
func (p *plan) undoLayer() {
	if p.layer[0] != "" {
		unprepareWritableLayer(p.layer[0], p.layer[1])
	}
}

// abandon undoes the plan of a run that failed before its command ran:
// it closes the cached network namespace it still holds (a child that
// started took it, see takeNetns) and leaves the writable layer as it was.
func (p *plan) abandon() {
	if p.netns != nil {
		p.netns.Close()
		p.netns = nil
	}
	p.undoLayer()
}

// cgroupInChild says the child opens the command's cgroup files itself,
// once the caller has made the group and given the go-ahead (see
// Cmd.plan's cg).
func (p *plan) cgroupInChild() bool { return len(p.config.CgroupProcsSlots) > 0 }

// planMode says what the child does once its sandbox is set up.
type planMode int

const (
	// runCommand: run the Cmd's command (Cmd.Run).
	runCommand planMode = iota
	// stayIdle: stay as init and run nothing (New).
	stayIdle
	// awaitCommand: wait for a command to be given later (a Pool).
	awaitCommand
)

// plan prepares everything the child will do.
// plan prepares the child's configuration for c on spec. cg, when set
// (a root caller's run), is the cgroup the caller makes for the command
// while the child sets the sandbox up: the child waits for it before it
// leaves the host's root, and opens its files then.
func (c *Cmd) plan(spec *rootfs.Spec, mode planMode, cg *cgroup.Config) (_ *plan, err error) {
	pause := mode == stayIdle
	limits := c.Limits.withDefaults()
	// Without root, a user namespace provides the privilege to set the
	// sandbox up (its root maps to the caller's own uid).
	userNS := os.Geteuid() != 0
	overlayOpts := ""
	if userNS {
		overlayOpts = ",userxattr"
	}
	cred, err := c.credential(userNS)
	if err != nil {
		return nil, err
	}
	// A pool's sandbox may serve several runs (see reusable). Its init
	// then installs the long part of the filter once, and each command
	// the part about the calls init goes on making, on top: the whole
	// filter is not needed.
	reuse := mode == awaitCommand && cg == nil && c.WritableLayer == "" && reusable(userNS, cred)
	var (
		filter *seccomp.Program
		split  *splitFilter
	)
	if reuse {
		split, err = c.Syscalls.split()
	} else {
		filter, err = c.Syscalls.program()
	}
	if err != nil {
		return nil, err
	}
	if len(spec.Layers) == 0 {
		return nil, fmt.Errorf("sandbox: image has no layers")
	}
	for _, l := range spec.Layers {
		if !filepath.IsAbs(l) || strings.ContainsAny(l, ":,\\") {
			return nil, fmt.Errorf("sandbox: image layer %q: must be an absolute path without ':', ',' or '\\'", l)
		}
	}
	binds, err := resolveBinds(c.Binds)
	if err != nil {
		return nil, err
	}
	if err := checkDevNull(); err != nil {
		return nil, err
	}
	// A run of a root caller may join a provably empty network namespace
	// left by an earlier run (see netns_linux.go).
	recycleNet := !userNS && mode != stayIdle && c.Network == NetworkNone
	var netns *os.File
	if recycleNet {
		netns = ns.TakeNetwork()
	}
	defer func() {
		if err != nil && netns != nil {
			netns.Close()
		}
	}()
	scratch, err := state.Ensure("mnt")
	if err != nil {
		return nil, fmt.Errorf("sandbox: state directory: %w", err)
	}
	var (
		upper = scratch + "/upper"
		work  = scratch + "/work"
		root  = scratch + "/root"
		tmp   = scratch + "/tmp"
		old   = "/" + oldRootName
		size  = fmt.Sprintf("size=%d", limits.Disk)
	)
	if c.WritableLayer != "" {
		if upper, work, err = prepareWritableLayer(c.WritableLayer); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				unprepareWritableLayer(upper, work)
			}
		}()
	}
	lower, lowerDir, err := lowerdirOption(spec.Layers)
	if err != nil {
		return nil, err
	}
	// A sandbox that may serve several runs has its init keep a directory
	// on each writable filesystem open, and ns_last_pid, in slots after
	// the binds'.
	all := append(imageBinds(spec.Binds), binds...)
	var writableSlots []int
	var lastPidSlot int
	nextSlot := len(all)
	reuseSlot := func(s *[]forkexec.Step, stage, path string, flags int) int {
		if reuse {
			*s = append(*s, forkexec.OpenSlot(stage, path, flags, nextSlot))
		}
		nextSlot++
		return nextSlot - 1
	}
	s := []forkexec.Step{
		forkexec.Mount("make / private", "", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""),
		forkexec.Mount("mount scratch tmpfs", "tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, size+",mode=0755"),
		forkexec.Mkdir("create upper dir", upper, 0o755),
		forkexec.Mkdir("create work dir", work, 0o755),
		forkexec.Mkdir("create root dir", root, 0o755),
		forkexec.Mkdir("create /tmp", tmp, 0o1777),
	}
	// The scratch tmpfs holds the overlay's upper directory and /tmp.
	writableSlots = append(writableSlots, reuseSlot(&s, "open scratch tmpfs", upper, unix.O_RDONLY|unix.O_DIRECTORY))
	if lowerDir != "" {
		// Layer paths relative to here keep the option string in a page.
		s = append(s, forkexec.Chdir("enter layer links", lowerDir))
	}
	s = append(s,
		forkexec.Mount("mount overlay", "overlay", root, "overlay", unix.MS_NOSUID|unix.MS_NODEV,
			"lowerdir="+lower+",upperdir="+upper+",workdir="+work+overlayOpts),
		forkexec.Chdir("enter root", root),
		// An image whose /proc, /dev or /tmp is a symbolic link is refused:
		// the mounts below would follow it.
		forkexec.EnsureDir("check /proc", "proc", 0o555),
		forkexec.EnsureDir("check /dev", "dev", 0o755),
		forkexec.EnsureDir("check /tmp", "tmp", 0o1777),
		forkexec.Mount("mount /proc", "proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""),
	)
	// Opened before /proc/sys is made read-only, on the proc mount itself.
	lastPidSlot = reuseSlot(&s, "open ns_last_pid", "proc/sys/kernel/ns_last_pid", unix.O_WRONLY)
	s = append(s, procMasks()...)
	// /dev is nodev: the device nodes below are binds of the host's, which
	// carry their own flags; nothing made in the tmpfs itself opens a device.
	s = append(s, forkexec.Mount("mount /dev", "tmpfs", "dev", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=65536"))
	for _, d := range devices {
		s = append(s,
			forkexec.Touch("create /dev/"+d, "dev/"+d, 0o666),
			forkexec.Bind("bind /dev/"+d, "/dev/"+d, "dev/"+d))
	}
	s = append(s,
		forkexec.Mkdir("create /dev/shm", "dev/shm", 0o1777),
		forkexec.Mount("mount /dev/shm", "tmpfs", "dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, size+",mode=1777"),
	)
	writableSlots = append(writableSlots, reuseSlot(&s, "open /dev/shm", "dev/shm", unix.O_RDONLY|unix.O_DIRECTORY))
	s = append(s,
		forkexec.Mkdir("create /dev/pts", "dev/pts", 0o755),
		forkexec.Mount("mount /dev/pts", "devpts", "dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"),
		forkexec.Symlink("link /dev/ptmx", "pts/ptmx", "dev/ptmx"),
		forkexec.Symlink("link /dev/fd", "/proc/self/fd", "dev/fd"),
		forkexec.Symlink("link /dev/stdin", "/proc/self/fd/0", "dev/stdin"),
		forkexec.Symlink("link /dev/stdout", "/proc/self/fd/1", "dev/stdout"),
		forkexec.Symlink("link /dev/stderr", "/proc/self/fd/2", "dev/stderr"),
		forkexec.Bind("mount /tmp", tmp, "tmp"),
	)
	// Bind sources are cloned as detached mount trees while the host's
	// root is still there; they are attached once it is gone, so that
	// their targets resolve inside the new root and no symbolic link in the
	// image can aim one at a host path.
	for i, b := range all {
		s = append(s, forkexec.CloneTree("clone bind source", b.Source, i))
	}
	var cgProcs, cgDir []int
	if cg != nil && !userNS {
		procs, dir, err := cgroup.Files(*cg)
		if err != nil {
			return nil, &SetupError{Stage: stageCreateCgroup, Err: err}
		}
		s = append(s, forkexec.WaitParent("wait for the cgroup"))
		slot := len(all) // after the binds'
		for _, p := range procs {
			s = append(s, forkexec.OpenSlot("open cgroup", p, unix.O_WRONLY, slot))
			cgProcs = append(cgProcs, slot)
			slot++
		}
		if dir != "" {
			s = append(s, forkexec.OpenSlot("open cgroup", dir, unix.O_RDONLY|unix.O_DIRECTORY, slot))
			cgDir = append(cgDir, slot)
		}
	}
	s = append(s,
		forkexec.Mkdir("create old root dir", oldRootName, 0o700),
		forkexec.PivotRoot("pivot_root", ".", oldRootName),
		forkexec.Chdir("enter new root", "/"),
		forkexec.Umount("detach old root", old, unix.MNT_DETACH),
		forkexec.Rmdir("remove old root dir", old),
	)
	for i, b := range all {
		for _, d := range b.parents {
			s = append(s, forkexec.Mkdir("create bind target", d, 0o755))
		}
		if b.dir {
			s = append(s, forkexec.Mkdir("create bind target", b.Target, 0o755))
		} else {
			s = append(s, forkexec.Touch("create bind target", b.Target, 0o644))
		}
		flags := uintptr(unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
		if !b.Writable {
			flags |= unix.MS_RDONLY
		}
		s = append(s,
			forkexec.AttachTree("bind mount", i, b.Target),
			forkexec.Remount("restrict bind", b.Target, flags|b.lockedFlags),
			forkexec.CloseSlot(i))
	}
	hostname := c.Hostname
	if hostname == "" {
		hostname = DefaultHostname
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	// The working directory is reached after the host's root is gone, so
	// it is inside the new root whatever links the image holds.
	s = append(s, forkexec.Sethostname(hostname))
	if c.Network != NetworkHost {
		// Also in a namespace from the cache: the run that left it may have
		// failed before it got this far.
		s = append(s, forkexec.LoopbackUp())
	}
	if mode == runCommand {
		s = append(s, forkexec.Chdir("chdir", dir), forkexec.CheckCwd("check working directory"))
	}

	env, pathEnv := withPath(c.Env)
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if c.Network != NetworkHost && netns == nil {
		flags |= unix.CLONE_NEWNET
	}
	if userNS {
		flags |= unix.CLONE_NEWUSER
	}
	var layer [2]string
	if c.WritableLayer != "" {
		layer = [2]string{upper, work}
	}
	if pause {
		return &plan{userNS: userNS, layer: layer, config: forkexec.Config{
			Cloneflags: flags,
			CgroupNS:   true,
			Steps:      s,
			Pause:      true,
		}}, nil
	}
	cfg := c.commandConfig(cred, filter, env, pathEnv, userNS)
	cfg.Cloneflags = flags
	cfg.CgroupNS = true
	cfg.Steps = s
	cfg.CgroupProcsSlots, cfg.CgroupDirSlots = cgProcs, cgDir
	if netns != nil {
		cfg.Join = []*os.File{netns}
	}
	if mode == awaitCommand {
		cfg.Deferred = true
		cfg.Path, cfg.Argv, cfg.Env = nil, nil, nil
	}
	if reuse {
		cfg.Reusable, cfg.LastPidSlot, cfg.WritableSlots = true, lastPidSlot, writableSlots
		if split != nil {
			cfg.InitSeccomp, cfg.Seccomp = &split.outer.Fprog, &split.inner.Fprog
		}
	}
	return &plan{userNS: userNS, config: cfg, filter: filter, split: split, netns: netns, recycleNet: recycleNet, layer: layer}, nil
}

// reusable says whether a pool's sandbox may serve more than one run: a
// command can then leave nothing behind that its init cannot see and
// undo. Its processes, IPC objects and cgroup are its own and go with it;
// a file it leaves on the sandbox's writable filesystems (the tmpfs of the
// overlay's upper directory and /tmp, /dev/shm) makes init throw the
// sandbox away, as does a socket left in its network namespace (the pool
// checks). Without a capability it cannot change the mounts, the hostname
// or the network's configuration. It must not run as init's uid either
// (the root of a caller without root, in its user namespace, included):
// it could then lower init's rlimits, change its priority or CPU
// affinity, which the next command would inherit, or write what the
// setup made on the writable filesystems (binds' targets, their parents),
// which would not change their free space. And the kernel must let init
// reset the next PID (ns_last_pid), so that every command is PID 2.
func reusable(userNS bool, cred Credential) bool {
	return !userNS && cred.UID != 0 && haveLastPid()
}

// haveLastPid: the kernel has /proc/sys/kernel/ns_last_pid (built with
// CONFIG_CHECKPOINT_RESTORE, as distributions' kernels are).
var haveLastPid = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/sys/kernel/ns_last_pid")
	return err == nil
})

// commandConfig is the part of the child's configuration about the
// command itself: who it runs as, its filter, what it executes.
func (c *Cmd) commandConfig(cred Credential, filter *seccomp.Program, env []string, pathEnv string, userNS bool) forkexec.Config {
	cfg := forkexec.Config{
		Path:             lookPath(c.Args[0], pathEnv),
		Argv:             c.Args,
		Env:              env,
		OOMScoreAdj:      true,
		DropCapabilities: true,
		NoNewPrivs:       true,
		SetCredentials:   true,
		Uid:              cred.UID,
		Gid:              cred.GID,
		Groups:           cred.Groups,
		KeepGroups:       userNS,
	}
	if filter != nil {
		cfg.Seccomp = &filter.Fprog
	}
	return cfg
}

// joinPlan prepares a child that joins the running sandbox sb and runs c
// there: it enters sb's namespaces (and so its root, already pivoted) and
// forks the command into sb's PID namespace.
func (c *Cmd) joinPlan(sb *Sandbox) (*plan, error) {
	cred, err := c.credential(sb.userNS)
	if err != nil {
		return nil, err
	}
	filter, err := c.Syscalls.program()
	if err != nil {
		return nil, err
	}
	env, pathEnv := withPath(c.Env)
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	cfg := c.commandConfig(cred, filter, env, pathEnv, sb.userNS)
	cfg.Join = sb.ns
	cfg.CgroupNS = true
	cfg.Steps = []forkexec.Step{forkexec.Chdir("chdir", dir), forkexec.CheckCwd("check working directory")}
	return &plan{config: cfg, filter: filter}, nil
}

// withPath returns env with PATH=DefaultPath added when it has none, and
// the PATH commands are looked up in.
func withPath(env []string) ([]string, string) {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			return env, v
		}
	}
	return append(env[:len(env):len(env)], "PATH="+DefaultPath), DefaultPath
}

// checkDevNull makes sure the /dev/null that masks /proc files is the real
// null device (1:3), not a file someone put in its place.
func checkDevNull() error {
	var st unix.Stat_t
	if err := unix.Stat("/dev/null", &st); err != nil {
		return fmt.Errorf("sandbox: /dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		return fmt.Errorf("sandbox: /dev/null is not the null device (1:3)")
	}
	return nil
}

// maxOverlayOptions is what fits in the mount options page with room for
// the upper and work dirs.
const maxOverlayOptions = 3000

// lowerdirOption returns the overlay's lowerdir value. When the layers'
// paths are too long for the one page the mount options may fill (an
// image of many layers), it makes short symbolic links to them in the
// state directory and returns their names with the directory to mount
// from.
func lowerdirOption(layers []string) (lower, dir string, err error) {
	lower = strings.Join(layers, ":")
	if len(lower) <= maxOverlayOptions {
		return lower, "", nil
	}
	dir, err = state.Ensure("l")
	if err != nil {
		return "", "", fmt.Errorf("sandbox: state directory: %w", err)
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		sum := sha256.Sum256([]byte(l))
		name := hex.EncodeToString(sum[:5])
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err != nil || target != l {
			tmp := link + ".tmp" + strconv.Itoa(os.Getpid())
			os.Remove(tmp)
			if err := os.Symlink(l, tmp); err != nil {
				return "", "", fmt.Errorf("sandbox: layer link: %w", err)
			}
			if err := os.Rename(tmp, link); err != nil {
				return "", "", fmt.Errorf("sandbox: layer link: %w", err)
			}
		}
		names[i] = name
	}
	lower = strings.Join(names, ":")
	if len(lower) > maxOverlayOptions {
		return "", "", fmt.Errorf("sandbox: image has too many layers (%d) for one overlay mount", len(layers))
	}
	return lower, dir, nil
}

// prepareWritableLayer makes the upper and work directories of a writable
// layer kept on the host.
func prepareWritableLayer(dir string) (upper, work string, err error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", "", invalid("WritableLayer", "%s is not empty", dir)
	}
	upper, work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", fmt.Errorf("sandbox: writable layer: %w", err)
		}
	}
	if strings.ContainsAny(dir, ":,\\") {
		return "", "", invalid("WritableLayer", "%q has ':', ',' or '\\'", dir)
	}
	return upper, work, nil
}

// unprepareWritableLayer removes what prepareWritableLayer made: the upper
// directory if nothing was written in it (os.Remove leaves one that is
// not empty), and the work directory.
func unprepareWritableLayer(upper, work string) {
	os.Remove(upper)
	removeWorkDir(work)
}

// removeWorkDir removes an overlay work directory. The kernel leaves a
// work/work directory of mode 000 in it, which only a caller with
// CAP_DAC_OVERRIDE could enter: open it up first.
func removeWorkDir(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// procMasks are the steps that mask and make read-only parts of /proc:
// those of maskedProcFiles, maskedProcDirs and readOnlyProc this kernel
// has. Which those are does not change while it runs: they are looked up
// once, not at every run.
var procMasks = sync.OnceValue(func() []forkexec.Step {
	var s []forkexec.Step
	exists := func(name string) bool {
		_, err := os.Lstat("/proc/" + name)
		return err == nil
	}
	for _, f := range maskedProcFiles {
		if exists(f) {
			s = append(s, forkexec.Bind("mask /proc/"+f, "/dev/null", "proc/"+f))
		}
	}
	for _, d := range maskedProcDirs {
		if exists(d) {
			s = append(s, forkexec.Mount("mask /proc/"+d, "tmpfs", "proc/"+d, "tmpfs",
				unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0555,size=4k"))
		}
	}
	for _, d := range readOnlyProc {
		if exists(d) {
			s = append(s,
				forkexec.Bind("make /proc/"+d+" read-only", "proc/"+d, "proc/"+d),
				forkexec.Remount("make /proc/"+d+" read-only", "proc/"+d,
					unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC))
		}
	}
	return s
})
