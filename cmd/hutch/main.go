// Command hutch runs commands in sandboxes from the command line, over the
// same API a Go program uses (package sandbox).
//
//	hutch run [flags] -- CMD [ARG...]
//
// It passes stdin, stdout and stderr through and exits with the command's
// exit code, 128+N when signal N ended it, and 125 when hutch itself
// failed (a bad flag, an image that does not exist, a setup error).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/cmd/hutch/internal/early"
	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/ns"
	"github.com/hutchbox/hutch/sandbox"
)

// exitHutch is the exit code for an error of hutch itself, as docker run.
const exitHutch = 125

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		// The sandbox's network namespace is being made on another thread
		// (and CPU) since the program's first initializers; the run joins
		// it.
		if early.Netns != nil {
			ns.AwaitNetwork(early.Netns)
		}
		// This process exists to run one sandbox: its init may share its
		// memory rather than copy all of it (0.8 ms of a run), once its
		// command line, which may hold secrets (--env), is blanked for
		// the sandbox's /proc/1/cmdline. Without it, init gets a copy.
		forkexec.ShareCallerMemory("hutch\x00run")
	}
	os.Exit(mainErr(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `hutch runs commands in sandboxes.

Usage:
  hutch run [flags] -- CMD [ARG...]   run a command in a sandbox
` + imagesUsage + `  hutch gc                            remove what crashed users of hutch left
  hutch help                          show this help

Run "hutch run -h" for the flags of run.
`

func mainErr(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "pull", "import", "images", "rmi", "export":
		return cmdImage(args[0], args[1:], stdout, stderr)
	case "gc":
		return cmdGC(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hutch: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hutch run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		image    = fs.String("image", "host", "root filesystem: `host` for the host's /usr, /bin, /lib* under a generated /etc, a directory, or a store image NAME[:TAG]")
		wall     = fs.String("wall", "", "wall-clock limit, e.g. 5s or 1m (default none)")
		cpuTime  = fs.String("time", "", "CPU time limit of the whole sandbox, e.g. 2s (default none)")
		memory   = fs.String("memory", "", "memory limit, e.g. 256M (default none)")
		pids     = fs.Int64("pids", 0, "most processes and threads at once (default 1024)")
		cpus     = fs.Float64("cpus", 0, "CPU bandwidth in cores, e.g. 0.5 (default no limit)")
		fsize    = fs.String("fsize", "", "largest file the command may write, e.g. 1M (default none)")
		nofile   = fs.Int64("nofile", 0, "most open files per process (default 1024)")
		stack    = fs.String("stack", "", "stack size limit, e.g. 8M (default 8M)")
		strict   = fs.Bool("strict", false, "fail instead of falling back when a limit cannot be enforced by a cgroup")
		output   = fs.String("output", "", "cap on each of stdout and stderr, e.g. 1M (default 64M)")
		disk     = fs.String("disk", "", "size of the writable layer, e.g. 256M (default 256M)")
		hostname = fs.String("hostname", "", "hostname in the sandbox (default hutch)")
		workdir  = fs.String("workdir", "", "working directory in the sandbox (default /)")
		result   = fs.String("result", "", "write the result as JSON to `FILE`")
		user     = fs.String("user", "", "run as `UID[:GID]` inside the sandbox (default 65534:65534 as root, 0:0 without root)")
		noSecc   = fs.Bool("no-seccomp", false, "run without the seccomp filter (not recommended)")
		envs     listFlag
		binds    listFlag
		pubs     listFlag
	)
	fs.Var(&envs, "env", "set `K=V` in the environment (repeatable)")
	fs.Var(&binds, "bind", "bind a host path, `SRC:DST[:rw]`, read-only unless :rw (repeatable)")
	fs.Var(&pubs, "publish", "forward the host's 127.0.0.1:HOST_PORT (any free port if omitted) to `[HOST_PORT:]PORT` in the sandbox, and print it (repeatable; also -p)")
	fs.Var(&pubs, "p", "short for --publish")
	images := addRunImageFlags(fs)
	defer images.close()
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: hutch run [flags] -- CMD [ARG...]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitHutch
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "hutch: "+format+"\n", a...)
		return exitHutch
	}
	if fs.NArg() == 0 {
		return fail("run: no command given (hutch run [flags] -- CMD [ARG...])")
	}
	cmd := &sandbox.Cmd{
		Args:     fs.Args(),
		Env:      envs,
		Dir:      *workdir,
		Hostname: *hostname,
		Stdin:    stdin,
		Stdout:   stdout,
		Stderr:   stderr,
	}
	var err error
	if cmd.Image, err = images.image(*image); err != nil {
		return fail("--image: %v", err)
	}
	if cmd.Limits.WallTime, err = parseDuration(*wall); err != nil {
		return fail("--wall: %v", err)
	}
	if cmd.Limits.CPUTime, err = parseDuration(*cpuTime); err != nil {
		return fail("--time: %v", err)
	}
	if cmd.Limits.Memory, err = parseSize(*memory); err != nil {
		return fail("--memory: %v", err)
	}
	if cmd.Limits.FileSize, err = parseSize(*fsize); err != nil {
		return fail("--fsize: %v", err)
	}
	if cmd.Limits.Stack, err = parseSize(*stack); err != nil {
		return fail("--stack: %v", err)
	}
	cmd.Limits.Pids, cmd.Limits.CPUs, cmd.Limits.OpenFiles, cmd.Limits.Strict = *pids, *cpus, *nofile, *strict
	if cmd.Limits.Output, err = parseSize(*output); err != nil {
		return fail("--output: %v", err)
	}
	if cmd.Limits.Disk, err = parseSize(*disk); err != nil {
		return fail("--disk: %v", err)
	}
	if *user != "" {
		cred, err := parseUser(*user)
		if err != nil {
			return fail("--user: %v", err)
		}
		cmd.Credential = cred
	}
	if *noSecc {
		cmd.Syscalls = &sandbox.SyscallFilter{Disable: true}
	}
	for _, b := range binds {
		bind, err := parseBind(b)
		if err != nil {
			return fail("--bind: %v", err)
		}
		cmd.Binds = append(cmd.Binds, bind)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := images.prepare(cmd); err != nil {
		return fail("%v", err)
	}
	var published []publish
	for _, p := range pubs {
		pub, err := parsePublish(p)
		if err != nil {
			return fail("--publish: %v", err)
		}
		published = append(published, pub)
	}
	var res *sandbox.Result
	if len(published) > 0 {
		res, err = runPublished(ctx, cmd, published, stderr)
	} else {
		res, err = cmd.Run(ctx)
	}
	if err := images.finish(ctx, cmd, res, stderr); err != nil {
		return fail("%v", err)
	}
	if res != nil && *result != "" {
		b, jerr := json.MarshalIndent(res, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(*result, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			fmt.Fprintf(stderr, "hutch: --result: %v\n", jerr)
		}
	}
	if err != nil && res == nil {
		return fail("%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hutch: %v\n", err)
	}
	switch res.Status {
	case sandbox.WallTimeLimit, sandbox.OutputLimit, sandbox.CPUTimeLimit, sandbox.MemoryLimit, sandbox.FileSizeLimit:
		fmt.Fprintf(stderr, "hutch: %s\n", strings.ReplaceAll(res.Status.String(), "_", " "))
	}
	return exitCode(res)
}

// exitCode is the process exit code for a result, as a shell reports it.
func exitCode(res *sandbox.Result) int {
	if res.Signal != 0 {
		return 128 + int(res.Signal)
	}
	if res.ExitCode >= 0 {
		return res.ExitCode
	}
	return exitHutch
}

// parseDuration accepts Go durations ("1.5s", "2m") and plain seconds ("2").
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// parseSize accepts bytes with an optional K, M, G or T suffix (powers of
// 1024), e.g. "512K", "1M", "1.5G", "4096".
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512K, 64M, 1G)", s)
	}
	return int64(f * float64(mult)), nil
}

// parseBind parses SRC:DST[:rw|:ro].
func parseBind(s string) (sandbox.Bind, error) {
	parts := strings.Split(s, ":")
	b := sandbox.Bind{}
	switch {
	case len(parts) == 2:
	case len(parts) == 3 && (parts[2] == "rw" || parts[2] == "ro"):
		b.Writable = parts[2] == "rw"
	default:
		return b, fmt.Errorf("%q is not SRC:DST[:rw]", s)
	}
	b.Source, b.Target = parts[0], parts[1]
	if b.Source == "" || b.Target == "" {
		return b, fmt.Errorf("%q is not SRC:DST[:rw]", s)
	}
	return b, nil
}

// parseUser parses UID[:GID]; GID defaults to UID.
func parseUser(s string) (*sandbox.Credential, error) {
	u, g, hasG := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%q is not UID[:GID] (numbers)", s)
	}
	gid := uid
	if hasG {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			return nil, fmt.Errorf("%q is not UID[:GID] (numbers)", s)
		}
	}
	return &sandbox.Credential{UID: uint32(uid), GID: uint32(gid)}, nil
}
