package sandbox_test

// The escape suite: each row runs one attack of internal/escape/attacker in
// the default sandbox and asserts its safe outcome, not merely that
// nothing crashed. It runs on every lane (cgroup v1 root, cgroup v2 root in
// the VM, rootless); the VM lane, which has no Go toolchain, passes a
// prebuilt attacker in HUTCH_ATTACKER.
//
// A row's needs field names the hardening its safe outcome rests on; ""
// means today's namespaces, pivot_root and mount flags already give it.
// The hardening, with the rows that wait for it (a row with two ways to
// pass is listed under both):
//
//	caps     the command's capabilities dropped (CapEff 0): caps
//	         mount-tmpfs mount-proc mount-sysfs mount-cgroup kmsg
//	         mknod-block kernel-module kcore int80-mount ptrace-init init-mem
//	         init-fd bpf perf userfaultfd open-by-handle tiocsti rlimit
//	userns   root inside is not root outside: blocks what the kernel
//	         checks against the initial user namespace (kmsg mknod-block
//	         sysctl-global ptrace-init init-mem init-fd bpf perf
//	         userfaultfd open-by-handle tiocsti), and is the only fix for
//	         suid-plant (or a non-root uid); it does not block the mount-*,
//	         unshare, int80-* or caps rows
//	seccomp  an allowlist with the i386 ABI denied as a whole: seccomp
//	         unshare keyctl io-uring int80-keyctl int80-mount vsock af-alg,
//	         and a second line behind most caps rows
//	nnp      no_new_privs: no-new-privs suid-exec/writable-bind
//	ro-proc  /proc/sys and the other global knobs read-only:
//	         sysctl-global sysrq
//	masked   /proc/kcore, /proc/sysrq-trigger and the like masked: kcore
//	         sysrq
//	binds    bind targets resolved once the old root is gone:
//	         symlink-bind/old-root-dir symlink-bind/old-root-file; nosuid
//	         on writable binds: suid-exec/writable-bind
//
// Rows that need nothing more: host-file host-shadow host-procs chroot
// setns sysctl-hostname sethostname dev-disk leaked-fd suid-exec/image
// suid-exec/read-only-bind symlink-bind/absolute symlink-bind/onto-link
// symlink-bind/relative net-ifaces net-connect netlink-audit.
//
// A row can also pass for a reason of the machine's: a kernel without
// /proc/kcore, sysrq, modules or AF_ALG, an LSM that keeps even root from
// opening disks, a root without CAP_SYS_RESOURCE. The log line of each row
// says what the attack met.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/internal/escape"
	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// escapeEnv is the host-side state the attacks aim at.
type escapeEnv struct {
	img  rootfs.Image
	root string // the image directory

	secret, secretHash string // a file planted on the host, not visible inside
	sharedDir          string // a directory on the secret's file system, bound at /shared
	handle             string // the secret's file handle, TYPE:HEX; "" when the file system has none
	shadowHash         string // of the host's /etc/shadow, or "unknown"
	hostname, domain   string // the host's
	blockDevs          string // the host's disks, MAJ:MIN[,...]
	suidDir            string // holds a set-user-ID root copy of the attacker
	plantDir           string // bound writable at /plant
	payloadDir         string // bound onto the links' targets
	payloadFile        string
	links              []linkCase
}

// linkCase is a symbolic link in the image aimed at a host directory of
// its own, the victim, and a bind whose target goes through the link.
type linkCase struct {
	title       string
	needs       string
	link        string // the link's name in the image
	target      func(victim string) string
	bindTarget  string
	fileSource  bool // bind the payload file, not the directory
	victim      string
	victimFiles string // the victim's listing before the run
}

// linkCases: the bind must land inside the sandbox's root, or the run
// fail, and nothing may be created or changed on the host.
func linkCases() []linkCase {
	abs := func(v string) string { return v }
	// The old root stays mounted at /.hutch-old-root until every bind is
	// made.
	oldRoot := func(v string) string { return "/.hutch-old-root" + v }
	return []linkCase{
		{title: "absolute", link: "evil-abs", target: abs, bindTarget: "/evil-abs/sub"},
		{title: "onto-link", link: "evil-onto", target: abs, bindTarget: "/evil-onto"},
		{title: "relative", link: "evil-rel", bindTarget: "/evil-rel/sub",
			target: func(v string) string { return strings.Repeat("../", 16) + strings.TrimPrefix(v, "/") }},
		{title: "old-root-dir", link: "evil-old-dir", target: oldRoot, bindTarget: "/evil-old-dir/sub", needs: "binds"},
		{title: "old-root-file", link: "evil-old-file", target: oldRoot, bindTarget: "/evil-old-file/planted", fileSource: true, needs: "binds"},
	}
}

// escapeOutcome is how one attack ended.
type escapeOutcome struct {
	res     *sandbox.Result
	err     error
	verdict escape.Verdict
	detail  string
}

type escapeRow struct {
	// name is the attack; title, when set, names the subtest instead.
	name, title string
	args        []string
	// needs is the hardening the safe outcome rests on (see the top of
	// the file); "" when today's sandbox gives it.
	needs string
	// killOK: being killed by SIGSYS (a seccomp filter) counts as blocked.
	killOK bool
	// setup adjusts the command: binds, stdin.
	setup func(t *testing.T, c *sandbox.Cmd)
	// check asserts the safe outcome; nil means the attacker must report
	// the attack blocked.
	check func(t *testing.T, o *escapeOutcome)
}

func TestEscape(t *testing.T) {
	attacker := escapeAttacker(t)
	img, root := busybox(t)
	e := newEscapeEnv(t, img, root, attacker)

	// A descriptor the test holds open without close-on-exec: the sandbox
	// must not hand it to the command (leaked-fd).
	leak, err := unix.Open(e.secret, unix.O_RDONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(leak) })

	// Should an attack change the host's names after all, put them back.
	t.Cleanup(func() {
		if h := hostFile(t, "/proc/sys/kernel/hostname"); h != e.hostname {
			t.Errorf("the host's hostname changed to %q; restoring %q", h, e.hostname)
			unix.Sethostname([]byte(e.hostname))
		}
		if d := hostFile(t, "/proc/sys/kernel/domainname"); d != e.domain {
			t.Errorf("the host's domainname changed to %q; restoring %q", d, e.domain)
			unix.Setdomainname([]byte(e.domain))
		}
	})

	for _, row := range escapeRows(e) {
		title := row.title
		if title == "" {
			title = row.name
		}
		t.Run(title, func(t *testing.T) {
			t.Parallel()
			o := runAttack(t, e, row)
			if o.verdict == escape.Skip {
				t.Skip(o.detail)
			}
			if row.check != nil {
				row.check(t, o)
			} else {
				assertBlocked(t, row, o)
			}
		})
	}
}

func escapeRows(e *escapeEnv) []escapeRow {
	secret := []string{e.secret, e.secretHash}
	bind := func(b ...sandbox.Bind) func(*testing.T, *sandbox.Cmd) {
		return func(_ *testing.T, c *sandbox.Cmd) { c.Binds = b }
	}
	rows := []escapeRow{
		// The host's files, processes and names.
		{name: "host-file", args: secret},
		{name: "host-shadow", args: []string{e.shadowHash}},
		{name: "host-procs", args: []string{strconv.Itoa(os.Getpid())}},
		{name: "chroot", args: secret},
		{name: "setns", args: secret, killOK: true},
		{name: "sysctl-hostname", check: e.hostNamesUnchanged},
		{name: "sethostname", killOK: true, check: e.hostNamesUnchanged},

		// Mounts and namespaces.
		{name: "mount-tmpfs", needs: "caps (CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "mount-proc", needs: "caps (CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "mount-sysfs", needs: "caps (CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "mount-cgroup", needs: "caps (CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "unshare", needs: "seccomp (user namespaces need no privilege); caps for CLONE_NEWNS", killOK: true},

		// Kernel knobs, devices and the kernel's memory.
		{name: "sysrq", needs: "masked or ro-proc (or userns)"},
		{name: "sysctl-global", needs: "ro-proc (or userns)"},
		{name: "kcore", needs: "masked (or caps: CAP_SYS_RAWIO)"},
		{name: "kmsg", needs: "caps (CAP_MKNOD; /dev is not nodev) or userns", killOK: true},
		{name: "mknod-block", args: []string{e.blockDevs}, needs: "caps (CAP_MKNOD; /dev is not nodev) or userns", killOK: true},
		{name: "dev-disk"},
		{name: "kernel-module", needs: "caps (CAP_SYS_MODULE) or seccomp", killOK: true},

		// System calls a sandbox has no use for.
		{name: "keyctl", needs: "seccomp", killOK: true},
		{name: "io-uring", needs: "seccomp", killOK: true},
		{name: "int80-keyctl", needs: "seccomp (deny the i386 ABI)", killOK: true, check: assertBlockedInt80},
		{name: "int80-mount", needs: "seccomp (deny the i386 ABI) and caps", killOK: true, check: assertBlockedInt80},
		{name: "bpf", needs: "caps (CAP_BPF, CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "perf", needs: "caps (CAP_PERFMON, CAP_SYS_ADMIN) or seccomp", killOK: true},
		{name: "userfaultfd", needs: "caps (CAP_SYS_PTRACE) or seccomp", killOK: true},
		{name: "vsock", needs: "seccomp (vsock is not network-namespaced)", killOK: true},
		{name: "af-alg", needs: "seccomp", killOK: true},
		{name: "netlink-audit", killOK: true},

		// init, a copy of the host process that started the sandbox.
		{name: "ptrace-init", needs: "caps (CAP_SYS_PTRACE) or userns", killOK: true},
		{name: "init-mem", needs: "caps (CAP_SYS_PTRACE) or userns"},
		{name: "init-fd", needs: "caps (CAP_SYS_PTRACE) or userns"},
		{name: "leaked-fd"},

		// Privilege: set-user-ID programs, capabilities, limits.
		{name: "suid-exec", title: "suid-exec/image", args: []string{"/suid-attacker"}},
		{name: "suid-exec", title: "suid-exec/writable-bind", args: []string{"/suid/suid-attacker"}, needs: "nnp, or binds (writable binds are not nosuid)",
			setup: bind(sandbox.Bind{Source: e.suidDir, Target: "/suid", Writable: true})},
		{name: "suid-exec", title: "suid-exec/read-only-bind", args: []string{"/suid/suid-attacker"},
			setup: bind(sandbox.Bind{Source: e.suidDir, Target: "/suid"})},
		{name: "suid-plant", args: []string{"/plant"}, needs: "userns (or a non-root uid)", killOK: true,
			setup: bind(sandbox.Bind{Source: e.plantDir, Target: "/plant", Writable: true}), check: e.noSetIDRootOnHost},
		{name: "open-by-handle", args: []string{"/shared", e.handle, e.secretHash}, needs: "caps (CAP_DAC_READ_SEARCH) or seccomp", killOK: true,
			setup: func(t *testing.T, c *sandbox.Cmd) {
				if e.handle == "" {
					t.Skip("the file system of the test's temporary directory has no file handles")
				}
				c.Binds = []sandbox.Bind{{Source: e.sharedDir, Target: "/shared"}}
			}},
		{name: "tiocsti", needs: "caps (CAP_SYS_ADMIN) or seccomp", killOK: true, setup: ptyStdin},
		{name: "rlimit", needs: "caps (CAP_SYS_RESOURCE)", killOK: true},
		{name: "caps", needs: "caps"},
		{name: "no-new-privs", needs: "nnp"},
		{name: "seccomp", needs: "seccomp"},

		// The network: only lo.
		{name: "net-ifaces"},
		{name: "net-connect", killOK: true},
	}

	// A symbolic link in the image aimed at a host path, on the way to a
	// bind target.
	for _, lc := range e.links {
		source := e.payloadDir
		if lc.fileSource {
			source = e.payloadFile
		}
		rows = append(rows, escapeRow{
			name:  "bind-probe",
			title: "symlink-bind/" + lc.title,
			args:  []string{lc.bindTarget},
			needs: lc.needs,
			setup: bind(sandbox.Bind{Source: source, Target: lc.bindTarget, Writable: true}),
			check: func(t *testing.T, o *escapeOutcome) { victimUntouched(t, lc, o) },
		})
	}
	return rows
}

// runAttack runs one row's attack in a sandbox.
func runAttack(t *testing.T, e *escapeEnv, row escapeRow) *escapeOutcome {
	t.Helper()
	c := &sandbox.Cmd{
		Image:  e.img,
		Args:   append([]string{"/attacker", row.name}, row.args...),
		Limits: sandbox.Limits{WallTime: 20 * time.Second},
	}
	if row.setup != nil {
		row.setup(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := &escapeOutcome{}
	o.res, o.err = c.Run(ctx)
	if o.err != nil {
		t.Logf("run: %v", o.err)
		return o
	}
	o.verdict, o.detail, _ = escape.Parse(o.res.Stdout)
	t.Logf("%s (%s, signal %d): %s %s", row.name, o.res.Status, o.res.Signal, o.verdict, o.detail)
	if len(o.res.Stderr) > 0 {
		t.Logf("stderr: %s", o.res.Stderr)
	}
	return o
}

// killedBySeccomp says whether the attacker died of a seccomp filter:
// killed by SIGSYS, or the Go runtime's report of a trapped SIGSYS.
func killedBySeccomp(res *sandbox.Result) bool {
	return res.Status == sandbox.Signaled && res.Signal == syscall.SIGSYS ||
		res.Status == sandbox.NonZeroExit && strings.Contains(string(res.Stderr), "SIGSYS")
}

func assertBlocked(t *testing.T, row escapeRow, o *escapeOutcome) {
	t.Helper()
	require.NoError(t, o.err)
	if row.killOK && killedBySeccomp(o.res) {
		return
	}
	require.Equal(t, sandbox.OK, o.res.Status, "the attacker did not finish: stderr: %s", o.res.Stderr)
	require.NotEmpty(t, o.verdict, "no RESULT line: stdout: %s", o.res.Stdout)
	assert.Equal(t, escape.Blocked, o.verdict, "%s (the safe outcome needs: %s)", o.detail, row.needs)
}

// assertBlockedInt80 also takes SIGSEGV: that is how int 0x80 ends on a
// kernel without IA32 emulation.
func assertBlockedInt80(t *testing.T, o *escapeOutcome) {
	t.Helper()
	require.NoError(t, o.err)
	if o.res.Status == sandbox.Signaled && o.res.Signal == syscall.SIGSEGV {
		t.Log("int 0x80 raised SIGSEGV: the kernel has no IA32 emulation")
		return
	}
	assertBlocked(t, escapeRow{killOK: true, needs: "seccomp (deny the i386 ABI)"}, o)
}

// assertRan asserts that the attacker finished or a seccomp filter killed
// it, for rows judged on the host's side.
func assertRan(t *testing.T, o *escapeOutcome) {
	t.Helper()
	require.NoError(t, o.err)
	if killedBySeccomp(o.res) {
		return
	}
	require.Equal(t, sandbox.OK, o.res.Status, "the attacker did not finish: stderr: %s", o.res.Stderr)
	require.Contains(t, []escape.Verdict{escape.Done, escape.Blocked}, o.verdict, "%s", o.detail)
}

func (e *escapeEnv) hostNamesUnchanged(t *testing.T, o *escapeOutcome) {
	t.Helper()
	assertRan(t, o)
	assert.Equal(t, e.hostname, hostFile(t, "/proc/sys/kernel/hostname"), "the host's hostname changed")
	assert.Equal(t, e.domain, hostFile(t, "/proc/sys/kernel/domainname"), "the host's domainname changed")
}

// noSetIDRootOnHost: nothing the sandbox wrote through a bind is a
// set-user-ID or set-group-ID program of the host's root.
func (e *escapeEnv) noSetIDRootOnHost(t *testing.T, o *escapeOutcome) {
	t.Helper()
	assertRan(t, o)
	entries, err := os.ReadDir(e.plantDir)
	require.NoError(t, err)
	for _, ent := range entries {
		fi, err := os.Lstat(filepath.Join(e.plantDir, ent.Name()))
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		assert.False(t, fi.Mode()&os.ModeSetuid != 0 && st.Uid == 0, "%s is set-user-ID root on the host (%v)", ent.Name(), fi.Mode())
		assert.False(t, fi.Mode()&os.ModeSetgid != 0 && st.Gid == 0, "%s is set-group-ID root on the host (%v)", ent.Name(), fi.Mode())
	}
}

// victimUntouched: the run failed to set up or ran, and either way the
// host directory the image's links aim at is as it was.
func victimUntouched(t *testing.T, lc linkCase, o *escapeOutcome) {
	t.Helper()
	var se *sandbox.SetupError
	if o.err != nil {
		require.ErrorAs(t, o.err, &se)
	} else {
		assertRan(t, o)
	}
	assert.Equal(t, lc.victimFiles, listDir(t, lc.victim), "the host directory behind the image's link changed (needs: %s)", lc.needs)
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, ent := range entries {
		names = append(names, ent.Name())
	}
	return strings.Join(names, " ")
}

func hostFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// ptyStdin gives the command a terminal of the test's as its stdin, the
// target of TIOCSTI.
func ptyStdin(t *testing.T, c *sandbox.Cmd) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("needs a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { pts.Close() })
	c.Stdin = pts
}

// escapeAttacker returns the attacker program: HUTCH_ATTACKER, or one
// built static from internal/escape/attacker. It skips when neither can be
// had (no toolchain, or no module cache, as in the rootless lane), and
// fails when the attacker does not compile.
func escapeAttacker(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HUTCH_ATTACKER"); p != "" {
		fi, err := os.Stat(p)
		require.NoError(t, err, "HUTCH_ATTACKER")
		require.True(t, fi.Mode().IsRegular(), "HUTCH_ATTACKER %s is not a file", p)
		return p
	}
	const how = "set HUTCH_ATTACKER to a static build of internal/escape/attacker (CGO_ENABLED=0 go build ./internal/escape/attacker)"
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the attacker and there is no Go toolchain to build it: " + how)
	}
	// This file's directory, in the module: the test may run anywhere.
	_, self, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "attacker")
	cmd := exec.Command(gobin, "build", "-buildvcs=false", "-o", out, "github.com/hutchbox/hutch/internal/escape/attacker")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	b, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return out
	case strings.Contains(string(b), "# github.com/hutchbox/hutch/"):
		t.Fatalf("building the attacker: %v\n%s", err, b)
	default:
		t.Skipf("needs the attacker and cannot build it here (%v: %s): %s", err, strings.TrimSpace(string(b)), how)
	}
	return ""
}

func newEscapeEnv(t *testing.T, img rootfs.Image, root, attacker string) *escapeEnv {
	t.Helper()
	e := &escapeEnv{img: img, root: root}
	testenv.CopyIntoRoot(t, root, attacker, "attacker", 0o755)
	testenv.CopyIntoRoot(t, root, attacker, "suid-attacker", 0o755|os.ModeSetuid)

	// The planted secret, and a directory beside it on the same file
	// system, for open_by_handle_at.
	token := make([]byte, 16)
	rand.Read(token)
	e.secret = filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(e.secret, []byte(hex.EncodeToString(token)), 0o644))
	e.secretHash = sha256Hex([]byte(hex.EncodeToString(token)))
	e.sharedDir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(e.sharedDir, "harmless"), []byte("x"), 0o644))
	if h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, e.secret, 0); err == nil {
		e.handle = fmt.Sprintf("%d:%s", h.Type(), hex.EncodeToString(h.Bytes()))
	}

	e.shadowHash = "unknown"
	if b, err := os.ReadFile("/etc/shadow"); err == nil {
		e.shadowHash = sha256Hex(b)
	}
	e.hostname = hostFile(t, "/proc/sys/kernel/hostname")
	e.domain = hostFile(t, "/proc/sys/kernel/domainname")
	e.blockDevs = hostDisks()

	e.suidDir = t.TempDir()
	require.NoError(t, os.Chmod(e.suidDir, 0o755))
	testenv.CopyIntoRoot(t, e.suidDir, attacker, "suid-attacker", 0o755|os.ModeSetuid)
	e.plantDir = t.TempDir()

	e.payloadDir = t.TempDir()
	e.payloadFile = filepath.Join(e.payloadDir, "payload-marker")
	require.NoError(t, os.WriteFile(e.payloadFile, []byte("p"), 0o644))
	for _, lc := range linkCases() {
		lc.victim = t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(lc.victim, "victim-marker"), []byte("v"), 0o644))
		lc.victimFiles = listDir(t, lc.victim)
		require.NoError(t, os.Symlink(lc.target(lc.victim), filepath.Join(root, lc.link)))
		e.links = append(e.links, lc)
	}
	return e
}

// hostDisks lists up to three of the host's block devices from
// /proc/partitions, as MAJ:MIN; 8:0 (sda) when it lists none.
func hostDisks() string {
	var devs []string
	b, _ := os.ReadFile("/proc/partitions")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			continue
		}
		if dev := f[0] + ":" + f[1]; !slices.Contains(devs, dev) && len(devs) < 3 {
			devs = append(devs, dev)
		}
	}
	if len(devs) == 0 {
		return "8:0"
	}
	return strings.Join(devs, ",")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
