package sandbox

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/rootfs"
)

// Defaults applied where a Limits field is zero.
const (
	// DefaultOutput caps each of stdout and stderr.
	DefaultOutput = 64 << 20
	// DefaultDisk bounds the sandbox's writable layer with /tmp (and,
	// apart, /dev/shm).
	DefaultDisk = 256 << 20
	// DefaultHostname is the hostname inside the sandbox.
	DefaultHostname = "hutch"
	// DefaultPids is the default for Limits.Pids.
	DefaultPids = 1024
	// DefaultOpenFiles is the default for Limits.OpenFiles (lowered to the
	// hard limit where that is lower).
	DefaultOpenFiles = 1024
	// DefaultStack is the default for Limits.Stack (lowered to the hard
	// limit where that is lower).
	DefaultStack = 8 << 20
	// DefaultPath is the PATH of a command whose Env sets none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Limits bound what a run may use. A zero field means its documented
// default; a negative one is an error.
//
// Memory, Pids, CPUs and CPUTime are enforced by the run's own cgroup, which
// counts every process and thread of the sandbox. Where no cgroup can be
// made (an unprivileged caller), Memory and CPUTime fall back to rlimits of
// the command's processes and Pids and CPUs are not enforced;
// Result.Enforced says which mechanism held each limit, and Strict turns
// such a fallback into an error before anything runs.
type Limits struct {
	// CPUTime is the most CPU time (user and system, all threads and all
	// processes together) the sandbox may use. A watchdog reading the
	// cgroup kills it promptly past the limit, and RLIMIT_CPU (one second
	// more, per process) is the backstop. Zero means no limit.
	CPUTime time.Duration
	// WallTime is the longest the command may run, from its start to its
	// end. Zero means no limit of its own: the context still applies.
	WallTime time.Duration
	// Memory is the most memory in bytes the sandbox may use (its cgroup's
	// limit, with swap at zero; files written to the writable layer count
	// too, as they live in memory). Past it the kernel's OOM killer ends
	// the run as MemoryLimit. Zero means no limit.
	Memory int64
	// Pids is the most processes and threads the sandbox may hold at once;
	// fork and clone fail past it. Zero means DefaultPids.
	Pids int64
	// CPUs is the CPU bandwidth in cores (0.5 is half of one core). Zero
	// means no limit.
	CPUs float64
	// FileSize is the largest file in bytes the command may write
	// (RLIMIT_FSIZE); a write past it ends the run as FileSizeLimit. Zero
	// means no limit (Disk still bounds the writable layer).
	FileSize int64
	// OpenFiles is the most file descriptors each process may hold
	// (RLIMIT_NOFILE). Zero means DefaultOpenFiles.
	OpenFiles int64
	// Stack is the stack size limit of each process in bytes
	// (RLIMIT_STACK). Zero means DefaultStack.
	Stack int64
	// Output caps each of stdout and stderr in bytes. Past the cap the
	// command is killed and the run ends as OutputLimit; what was read up
	// to the cap is kept. Zero means DefaultOutput.
	Output int64
	// Disk bounds the writable layer in bytes: the files the command
	// writes anywhere in its root and in /tmp share one tmpfs of this
	// size; /dev/shm is another of the same size. Zero means DefaultDisk.
	Disk int64
	// Strict makes a limit the caller set that cannot be enforced as
	// documented here (no cgroup for Memory, Pids, CPUs or CPUTime) an
	// error before anything runs, instead of a fallback reported in
	// Result.Enforced. (The default Pids limit alone is not such a limit.)
	Strict bool
}

// Bind makes a host path visible inside the sandbox, read-only unless
// Writable is set. Source must exist; Target is created when missing.
type Bind = rootfs.Bind

// Cmd describes one sandboxed run. Only Image and Args are required.
type Cmd struct {
	// Image is the read-only root filesystem, e.g. rootfs.Host() or
	// rootfs.Dir(path).
	Image rootfs.Image
	// Args is the command and its arguments. Args[0] is looked up in the
	// sandbox's PATH unless it contains a slash.
	Args []string
	// Limits bound the run.
	Limits Limits
	// Env is the command's whole environment, as "KEY=value" strings.
	// Nothing of the caller's environment is passed; PATH is DefaultPath
	// unless Env sets it.
	Env []string
	// Dir is the working directory inside the sandbox, an absolute path.
	// Empty means "/".
	Dir string
	// Stdin is the command's standard input; nil means /dev/null. An
	// *os.File is passed to the command as is; any other reader is copied
	// through a pipe by a goroutine, which Run does not wait for if the
	// reader blocks after the command has ended.
	Stdin io.Reader
	// Stdout and Stderr, when set, receive the command's output as it
	// comes (up to Limits.Output) instead of Result.Stdout and
	// Result.Stderr. Run returns only once everything was written.
	Stdout, Stderr io.Writer
	// Hostname is the sandbox's hostname. Empty means DefaultHostname.
	Hostname string
	// Binds are host paths made visible in the sandbox.
	Binds []Bind
	// Credential is the user and groups the command runs as, inside the
	// sandbox. Nil means DefaultUID and DefaultGID when the caller is root,
	// and root (0:0) of the sandbox's user namespace otherwise (the only
	// id mapped there: the caller's own). Whoever it is, the command has
	// no capabilities.
	Credential *Credential
	// Syscalls adjusts the seccomp filter the command runs under; nil
	// means the default filter.
	Syscalls *SyscallFilter
	// WritableLayer, when set, is a host directory that holds the run's
	// writable layer instead of a tmpfs, and keeps it after the run: its
	// "upper" subdirectory is the overlay's upper layer (with overlayfs
	// whiteouts for deletions), ready to be committed as an image layer.
	// It must not exist or be empty, on a filesystem overlayfs accepts as
	// an upper layer (not overlayfs itself). Limits.Disk then bounds only
	// /tmp and /dev/shm, which are not part of the layer. A run that fails
	// before its command runs leaves it as it was.
	WritableLayer string
	// Network is the sandbox's network: by default its own namespace with
	// only lo.
	Network Network

	// sandbox, set by Sandbox.Command, runs the command in that sandbox.
	sandbox *Sandbox
}

// Network says which network a sandbox has.
type Network int

const (
	// NetworkNone: a network namespace of its own with only lo, up. Reach
	// a server in it with Sandbox.Dial or Sandbox.Forward.
	NetworkNone Network = iota
	// NetworkHost: the caller's own network namespace, for code that
	// needs the host's network. It weakens the sandbox.
	NetworkHost
)

// Config configures a long-lived Sandbox (see New). The zero Config is
// valid.
type Config struct {
	// Limits are the sandbox's as a whole: Memory, Pids and CPUs cap all
	// its processes together (each command's own Limits apply inside
	// them), Disk bounds its writable layer. Its other fields are unused.
	Limits Limits
	// Hostname, Binds, Network and WritableLayer are as on Cmd.
	Hostname      string
	Binds         []Bind
	Network       Network
	WritableLayer string
	// Env is given to every command, under the command's own Env.
	Env []string
}

// Credential is a user identity inside the sandbox.
type Credential struct {
	UID, GID uint32
	// Groups are the supplementary groups.
	Groups []uint32
}

// Defaults for Cmd.Credential when the caller is root: the command runs as
// nobody, so that no file it writes through a writable bind belongs to
// root on the host.
const (
	DefaultUID = 65534
	DefaultGID = 65534
)

// SyscallFilter adjusts the seccomp filter. The default filter is an
// allowlist based on Docker's default profile, tighter where a sandbox
// needs no more (no mount, no new namespaces, no keyctl, bpf, io_uring,
// ptrace, ...); a syscall through another ABI (i386, x32) kills the process.
type SyscallFilter struct {
	// Allow lists syscalls allowed on top of the default filter (or of
	// Replace).
	Allow []string
	// Deny lists syscalls refused with EPERM.
	Deny []string
	// Replace, when not nil, replaces the default allowlist: only these
	// syscalls (and Allow) are allowed, every other one fails with EPERM.
	Replace []string
	// Disable runs the command with no filter at all.
	Disable bool
}

// Run runs args in a sandbox built from img, with the given limits, and
// waits for it to end. It is a short form of Cmd.Run.
func Run(ctx context.Context, img rootfs.Image, args []string, limits Limits) (*Result, error) {
	return (&Cmd{Image: img, Args: args, Limits: limits}).Run(ctx)
}

// Status says how a run ended.
type Status int

// The statuses. When several apply, the first in this list wins: an OOM
// kill is MemoryLimit, not Signaled; a run past its CPU time is
// CPUTimeLimit whether the watchdog or the RLIMIT_CPU backstop ended it; a
// run killed for its wall time is WallTimeLimit.
const (
	// OK: the command exited with code 0.
	OK Status = iota
	// NonZeroExit: the command exited with a code other than 0.
	NonZeroExit
	// Signaled: the command was ended by a signal that no limit explains
	// (its own abort(), a kill from inside the sandbox).
	Signaled
	// WallTimeLimit: the command ran past Limits.WallTime and was killed.
	WallTimeLimit
	// OutputLimit: the command wrote more than Limits.Output to stdout or
	// stderr and was killed.
	OutputLimit
	// Canceled: the context ended first and the command was killed. Run
	// then also returns the context's error.
	Canceled
	// CPUTimeLimit: the sandbox used more than Limits.CPUTime.
	CPUTimeLimit
	// MemoryLimit: the kernel's OOM killer ended a process of the sandbox
	// at Limits.Memory.
	MemoryLimit
	// FileSizeLimit: the command wrote past Limits.FileSize (SIGXFSZ).
	FileSizeLimit
)

var statusNames = [...]string{
	OK:            "ok",
	NonZeroExit:   "nonzero_exit",
	Signaled:      "signaled",
	WallTimeLimit: "wall_time_limit",
	OutputLimit:   "output_limit",
	Canceled:      "canceled",
	CPUTimeLimit:  "cpu_time_limit",
	MemoryLimit:   "memory_limit",
	FileSizeLimit: "file_size_limit",
}

// String returns the status in snake_case, as in JSON results.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// MarshalText encodes the status as its snake_case name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a snake_case status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("sandbox: unknown status %q", b)
}

// Result is how a run ended and what it used.
type Result struct {
	Status Status
	// ExitCode is the command's exit code when it exited, else -1.
	ExitCode int
	// Signal is the signal that ended the command, when one did.
	Signal syscall.Signal
	// WallTime is the time from the command's start to its end.
	WallTime time.Duration
	// CPUTime is the CPU time (user and system) of every process of the
	// sandbox, from its cgroup; without a cgroup, of the command and the
	// children it waited for, from wait4's rusage.
	CPUTime time.Duration
	// MemoryPeak is the sandbox's peak memory use in bytes, from its
	// cgroup (memory.peak on v2, memory.max_usage_in_bytes on v1); without
	// a cgroup, the largest peak resident set of the command or a
	// waited-for child, from wait4's rusage.
	MemoryPeak int64
	// OOMKills is how many processes the OOM killer ended in the sandbox.
	OOMKills int64
	// Enforced says how each limit that applied to the run was enforced,
	// keyed by Limits field name: "cgroup", "cgroup+rlimit", "rlimit",
	// "watchdog" or "none" (see Limits).
	Enforced map[string]string
	// Stdout and Stderr are what the command wrote, up to Limits.Output
	// each, unless Cmd.Stdout or Cmd.Stderr received it.
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated are set when output past the
	// cap was dropped.
	StdoutTruncated, StderrTruncated bool
}

// SetupError is a failure between the clone and the command's execve: a
// mount, pivot_root, or the execve itself. Err is the errno, so
// errors.Is(err, fs.ErrNotExist) holds for a command that does not exist.
type SetupError struct {
	// Stage names the step, e.g. "mount overlay", "pivot_root", "execve".
	Stage string
	// Path is what the step acted on, when there is one.
	Path string
	Err  error
}

func (e *SetupError) Error() string {
	if e.Path != "" {
		return "sandbox: " + e.Stage + " " + e.Path + ": " + e.Err.Error()
	}
	return "sandbox: " + e.Stage + ": " + e.Err.Error()
}

func (e *SetupError) Unwrap() error { return e.Err }

// ConfigError is a bad argument, found before anything is created. It
// matches fs.ErrInvalid with errors.Is.
type ConfigError struct {
	Field  string // e.g. "Args", "Limits.WallTime"
	Reason string
}

func (e *ConfigError) Error() string { return "sandbox: invalid " + e.Field + ": " + e.Reason }

func (e *ConfigError) Unwrap() error { return fs.ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// validate checks the parts of c that need no system call. With
// imageMayHaveCmd, an empty Args is left for the image's config to fill.
func (c *Cmd) validate(imageMayHaveCmd bool) error {
	if c.Image == nil {
		return invalid("Image", "nil")
	}
	if !imageMayHaveCmd && (len(c.Args) == 0 || c.Args[0] == "") {
		return invalid("Args", "empty command")
	}
	if len(c.Args) > 0 && c.Args[0] == "" {
		return invalid("Args", "empty command")
	}
	if c.WritableLayer != "" && !path.IsAbs(c.WritableLayer) {
		return invalid("WritableLayer", "%q is not absolute", c.WritableLayer)
	}
	for _, a := range c.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("Args", "NUL byte in %q", a)
		}
	}
	for _, l := range []struct {
		name string
		v    int64
	}{
		{"Limits.WallTime", int64(c.Limits.WallTime)},
		{"Limits.Output", c.Limits.Output},
		{"Limits.Disk", c.Limits.Disk},
		{"Limits.CPUTime", int64(c.Limits.CPUTime)},
		{"Limits.Memory", c.Limits.Memory},
		{"Limits.Pids", c.Limits.Pids},
		{"Limits.FileSize", c.Limits.FileSize},
		{"Limits.OpenFiles", c.Limits.OpenFiles},
		{"Limits.Stack", c.Limits.Stack},
	} {
		if l.v < 0 {
			return invalid(l.name, "negative (%d)", l.v)
		}
	}
	if cpus := c.Limits.CPUs; cpus != 0 && !(cpus >= 0.01 && cpus <= 1<<20) {
		return invalid("Limits.CPUs", "%v is outside [0.01, %d]", cpus, 1<<20)
	}
	if m := c.Limits.Memory; m != 0 && m < 1<<20 {
		return invalid("Limits.Memory", "%d bytes is below the 1 MiB minimum", m)
	}
	if c.Limits.Disk != 0 && c.Limits.Disk < 64<<10 {
		return invalid("Limits.Disk", "%d bytes is below the 64 KiB minimum", c.Limits.Disk)
	}
	for _, e := range c.Env {
		if !strings.Contains(e, "=") || strings.IndexByte(e, 0) >= 0 || strings.HasPrefix(e, "=") {
			return invalid("Env", "%q is not KEY=value", e)
		}
	}
	if c.Dir != "" && !path.IsAbs(c.Dir) {
		return invalid("Dir", "%q is not absolute", c.Dir)
	}
	if len(c.Hostname) > 64 || strings.ContainsAny(c.Hostname, "\x00/ ") {
		return invalid("Hostname", "%q is not a valid hostname", c.Hostname)
	}
	for _, b := range c.Binds {
		if !path.IsAbs(b.Source) {
			return invalid("Binds", "source %q is not absolute", b.Source)
		}
		t := path.Clean(b.Target)
		if !path.IsAbs(b.Target) || t == "/" {
			return invalid("Binds", "target %q must be an absolute path below /", b.Target)
		}
		for _, reserved := range []string{"/proc", "/dev", "/" + oldRootName} {
			if t == reserved || strings.HasPrefix(t, reserved+"/") {
				return invalid("Binds", "target %q is reserved", b.Target)
			}
		}
	}
	return nil
}

// withImageConfig returns a copy of c with the image's run configuration
// applied where c leaves a setting empty: the command (Entrypoint followed
// by Cmd, when c has no Args), the environment (per variable, c's win), the
// working directory and the user.
func (c *Cmd) withImageConfig(spec *rootfs.Spec) (*Cmd, error) {
	cfg := spec.Config
	if cfg == nil {
		return c, nil
	}
	e := *c
	if len(e.Args) == 0 {
		e.Args = append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	}
	if len(cfg.Env) > 0 {
		set := map[string]bool{}
		for _, kv := range c.Env {
			k, _, _ := strings.Cut(kv, "=")
			set[k] = true
		}
		env := append([]string(nil), c.Env...)
		for _, kv := range cfg.Env {
			if k, _, _ := strings.Cut(kv, "="); !set[k] {
				env = append(env, kv)
			}
		}
		e.Env = env
	}
	if e.Dir == "" {
		e.Dir = cfg.WorkingDir
	}
	if e.Credential == nil && cfg.User != "" {
		uid, gid, err := spec.LookupUser(cfg.User)
		if err != nil {
			return nil, invalid("Image", "%v", err)
		}
		e.Credential = &Credential{UID: uid, GID: gid}
	}
	return &e, nil
}
