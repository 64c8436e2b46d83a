package seccomp

import (
	"encoding/binary"
	"errors"
	"maps"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Personality flags that weaken ASLR and NX (linux/personality.h).
const (
	addrNoRandomize = 0x0040000
	readImpliesExec = 0x0400000
)

// filterVM runs an assembled filter in golang.org/x/net/bpf's emulator.
type filterVM struct {
	vm *bpf.VM
}

func newFilterVM(t *testing.T, filter []unix.SockFilter) *filterVM {
	t.Helper()
	insns := make([]bpf.Instruction, len(filter))
	for i, f := range filter {
		insns[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
		// The emulator reads packets big-endian; run below relies on
		// every load being an aligned 32-bit word, as seccomp requires.
		if ld, ok := insns[i].(bpf.LoadAbsolute); ok {
			require.Equal(t, 4, ld.Size, "instruction %d: %v", i, ld)
			require.Zero(t, ld.Off%4, "instruction %d: %v", i, ld)
		}
		_, isRaw := insns[i].(bpf.RawInstruction)
		require.False(t, isRaw, "instruction %d does not disassemble: %+v", i, f)
	}
	vm, err := bpf.NewVM(insns)
	require.NoError(t, err)
	return &filterVM{vm: vm}
}

// run returns the filter's verdict on a system call. It lays out struct
// seccomp_data as the kernel does on a little-endian machine, then
// reverses each 32-bit word, so that the emulator's big-endian loads read
// the values the kernel's native loads would.
func (f *filterVM) run(t *testing.T, arch, nr uint32, args ...uint64) Action {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	binary.LittleEndian.PutUint64(data[8:], 0x401000) // instruction_pointer
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	for i := 0; i < len(data); i += 4 {
		slices.Reverse(data[i : i+4])
	}
	out, err := f.vm.Run(data[:])
	require.NoError(t, err)
	return Action(uint32(out))
}

func nr(t *testing.T, name string) uint32 {
	t.Helper()
	n, ok := syscallNumbers()[name]
	require.True(t, ok, "no system call %q on %s", name, runtime.GOARCH)
	return n
}

func TestDefaultPolicyVerdicts(t *testing.T) {
	filter, err := DefaultPolicy().Build()
	require.NoError(t, err)
	t.Logf("default filter: %d instructions", len(filter))
	vm := newFilterVM(t, filter)

	const (
		cloneFork   = uint64(unix.SIGCHLD)
		cloneThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
			unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS |
			unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
		cloneVfork = unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_PIDFD | cloneFork
	)
	eperm, enosys := Errno(unix.EPERM), Errno(unix.ENOSYS)
	tests := []struct {
		name    string
		syscall string
		args    []uint64
		want    Action
	}{
		{"read", "read", nil, Allow},
		{"write", "write", nil, Allow},
		{"exit_group", "exit_group", nil, Allow},
		{"execve", "execve", nil, Allow},
		{"futex", "futex", nil, Allow},
		{"rt_sigreturn", "rt_sigreturn", nil, Allow},
		{"clone fork", "clone", []uint64{cloneFork}, Allow},
		{"clone thread", "clone", []uint64{cloneThread}, Allow},
		{"clone vfork pidfd", "clone", []uint64{cloneVfork}, Allow},
		{"clone exit signal 0x80", "clone", []uint64{0x80}, Allow},
		{"clone NEWNS", "clone", []uint64{unix.CLONE_NEWNS | cloneFork}, eperm},
		{"clone NEWUSER", "clone", []uint64{unix.CLONE_NEWUSER | cloneFork}, eperm},
		{"clone NEWPID", "clone", []uint64{unix.CLONE_NEWPID}, eperm},
		{"clone NEWNET|thread", "clone", []uint64{unix.CLONE_NEWNET | cloneThread}, eperm},
		{"clone NEWCGROUP", "clone", []uint64{unix.CLONE_NEWCGROUP}, eperm},
		{"clone NEWIPC", "clone", []uint64{unix.CLONE_NEWIPC}, eperm},
		{"clone NEWUTS", "clone", []uint64{unix.CLONE_NEWUTS}, eperm},
		{"clone3", "clone3", nil, enosys},
		{"mount", "mount", nil, eperm},
		{"umount2", "umount2", nil, eperm},
		{"pivot_root", "pivot_root", nil, eperm},
		{"chroot", "chroot", nil, eperm},
		{"fsopen", "fsopen", nil, eperm},
		{"move_mount", "move_mount", nil, eperm},
		{"open_tree", "open_tree", nil, eperm},
		{"mount_setattr", "mount_setattr", nil, eperm},
		{"unshare", "unshare", []uint64{unix.CLONE_NEWUSER}, eperm},
		{"unshare files", "unshare", []uint64{unix.CLONE_FILES}, eperm},
		{"setns", "setns", nil, eperm},
		{"keyctl", "keyctl", nil, eperm},
		{"add_key", "add_key", nil, eperm},
		{"request_key", "request_key", nil, eperm},
		{"bpf", "bpf", nil, eperm},
		{"perf_event_open", "perf_event_open", nil, eperm},
		{"userfaultfd", "userfaultfd", nil, eperm},
		{"io_uring_setup", "io_uring_setup", nil, eperm},
		{"io_uring_enter", "io_uring_enter", nil, eperm},
		{"io_uring_register", "io_uring_register", nil, eperm},
		{"kexec_load", "kexec_load", nil, eperm},
		{"kexec_file_load", "kexec_file_load", nil, eperm},
		{"init_module", "init_module", nil, eperm},
		{"finit_module", "finit_module", nil, eperm},
		{"delete_module", "delete_module", nil, eperm},
		{"ptrace", "ptrace", nil, eperm},
		{"process_vm_readv", "process_vm_readv", nil, eperm},
		{"process_vm_writev", "process_vm_writev", nil, eperm},
		{"pidfd_getfd", "pidfd_getfd", nil, eperm},
		{"kcmp", "kcmp", nil, eperm},
		{"open_by_handle_at", "open_by_handle_at", nil, eperm},
		{"name_to_handle_at", "name_to_handle_at", nil, eperm},
		{"settimeofday", "settimeofday", nil, eperm},
		{"clock_settime", "clock_settime", nil, eperm},
		{"adjtimex", "adjtimex", nil, eperm},
		{"clock_adjtime", "clock_adjtime", nil, eperm},
		{"reboot", "reboot", nil, eperm},
		{"syslog", "syslog", nil, eperm},
		{"acct", "acct", nil, eperm},
		{"swapon", "swapon", nil, eperm},
		{"quotactl", "quotactl", nil, eperm},
		{"vhangup", "vhangup", nil, eperm},
		{"socket INET", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM}, Allow},
		{"socket INET6", "socket", []uint64{unix.AF_INET6, unix.SOCK_DGRAM}, Allow},
		{"socket UNIX", "socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, Allow},
		{"socket NETLINK", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW}, Allow},
		{"socket VSOCK", "socket", []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, eperm},
		{"socket ALG", "socket", []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET}, eperm},
		// The kernel reads the family as an int: the upper half must not
		// hide it.
		{"socket VSOCK upper half set", "socket", []uint64{1<<32 | unix.AF_VSOCK}, eperm},
		{"socket ALG upper half set", "socket", []uint64{0xffffffff_00000000 | unix.AF_ALG}, eperm},
		{"ioctl TCGETS", "ioctl", []uint64{0, unix.TCGETS}, Allow},
		{"ioctl FIONREAD", "ioctl", []uint64{3, unix.TIOCINQ}, Allow},
		{"ioctl TIOCSTI", "ioctl", []uint64{0, unix.TIOCSTI}, eperm},
		{"ioctl TIOCLINUX", "ioctl", []uint64{0, unix.TIOCLINUX}, eperm},
		{"ioctl TIOCSTI upper half set", "ioctl", []uint64{0, 1<<32 | unix.TIOCSTI}, eperm},
		{"ioctl TIOCSTI in arg2 only", "ioctl", []uint64{0, unix.TCGETS, unix.TIOCSTI}, Allow},
		{"personality query", "personality", []uint64{0xffffffff}, Allow},
		{"personality PER_LINUX", "personality", []uint64{0}, Allow},
		{"personality PER_LINUX32", "personality", []uint64{0x8}, Allow},
		{"personality UNAME26", "personality", []uint64{0x20000}, Allow},
		{"personality UNAME26|PER_LINUX32", "personality", []uint64{0x20008}, Allow},
		{"personality ADDR_NO_RANDOMIZE", "personality", []uint64{addrNoRandomize}, eperm},
		{"personality READ_IMPLIES_EXEC", "personality", []uint64{readImpliesExec}, eperm},
		{"getrandom", "getrandom", nil, Allow},
		{"rseq", "rseq", nil, Allow},
		{"statx", "statx", nil, Allow},
		{"faccessat2", "faccessat2", nil, Allow},
		{"epoll_pwait2", "epoll_pwait2", nil, Allow},
		{"close_range", "close_range", nil, Allow},
		{"openat2", "openat2", nil, Allow},
		{"pidfd_open", "pidfd_open", nil, Allow},
		{"membarrier", "membarrier", nil, Allow},
		{"futex_waitv", "futex_waitv", nil, Allow},
		{"map_shadow_stack", "map_shadow_stack", nil, Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, vm.run(t, auditArch, nr(t, tt.syscall), tt.args...))
		})
	}

	t.Run("unknown number", func(t *testing.T) {
		assert.Equal(t, enosys, vm.run(t, auditArch, 999))
		assert.Equal(t, enosys, vm.run(t, auditArch, slices.Max(knownNumbers())+1))
		assert.Equal(t, enosys, vm.run(t, auditArch, 0x3fffffff))
	})
	t.Run("foreign arch", func(t *testing.T) {
		foreign := uint32(unix.AUDIT_ARCH_I386)
		if runtime.GOARCH == "arm64" {
			foreign = unix.AUDIT_ARCH_ARM
		}
		for _, n := range []uint32{0, 1, 3, 20, nr(t, "read"), nr(t, "write")} {
			assert.Equal(t, KillProcess, vm.run(t, foreign, n), "syscall %d", n)
		}
		assert.Equal(t, KillProcess, vm.run(t, unix.AUDIT_ARCH_X86_64^unix.AUDIT_ARCH_AARCH64^auditArch, nr(t, "read")))
		assert.Equal(t, KillProcess, vm.run(t, 0, nr(t, "read")))
	})
	t.Run("x32", func(t *testing.T) {
		if x32Bit == 0 {
			t.Skipf("%s has no x32 ABI", runtime.GOARCH)
		}
		for _, n := range []uint32{nr(t, "read"), nr(t, "write"), nr(t, "getpid"), 512, 547} {
			assert.Equal(t, KillProcess, vm.run(t, auditArch, x32Bit|n), "syscall %#x", x32Bit|n)
		}
		assert.Equal(t, enosys, vm.run(t, auditArch, 0xffffffff), "syscall(-1)")
	})
}

// evaluate is the reference semantics of a policy, written without BPF.
func evaluate(p *Policy, arch, n uint32, args [6]uint64) Action {
	if arch != auditArch || x32Bit != 0 && n >= x32Bit && n != 0xffffffff {
		return KillProcess
	}
	if !slices.Contains(knownNumbers(), n) {
		return Errno(unix.ENOSYS)
	}
	for _, r := range p.Rules {
		if syscallNumbers()[r.Syscall] != n {
			continue
		}
		matches := true
		for _, c := range r.Args {
			a := args[c.Index]
			switch c.Op {
			case Equal:
				matches = matches && a == c.Value
			case NotEqual:
				matches = matches && a != c.Value
			case MaskedEqual:
				matches = matches && a&c.Mask == c.Value
			}
		}
		if matches {
			return r.Action
		}
	}
	return p.DefaultAction
}

// interesting returns argument values near those of the conditions on
// system call n, so that random inputs hit the conditions' edges.
func interesting(p *Policy, n uint32) []uint64 {
	vals := []uint64{0, 1, 0xffffffff, 1 << 32, 0xffffffff_ffffffff}
	for _, r := range p.Rules {
		if syscallNumbers()[r.Syscall] != n {
			continue
		}
		for _, c := range r.Args {
			vals = append(vals, c.Value, c.Value|1<<32, c.Value^1, c.Value|^c.Mask, c.Value&0xffffffff,
				bits.RotateLeft64(c.Value, 32))
		}
	}
	return vals
}

// testPolicies returns the default policy, random policies and a long
// one, to check assembled filters against evaluate.
func testPolicies(rng *rand.Rand) map[string]*Policy {
	names := slices.Sorted(maps.Keys(syscallNumbers()))

	randomPolicy := func() *Policy {
		actions := []Action{Allow, Errno(unix.EPERM), Errno(unix.EACCES), KillProcess, Log, Trap, Errno(0)}
		p := &Policy{DefaultAction: actions[rng.IntN(len(actions))]}
		for _, name := range names {
			switch k := rng.IntN(8); {
			case k < 3:
				continue // left to the default
			case k < 6:
				p.Rules = append(p.Rules, Rule{Syscall: name, Action: actions[rng.IntN(len(actions))]})
				continue
			}
			for range 1 + rng.IntN(3) {
				var conds []ArgCond
				for range 1 + rng.IntN(3) {
					c := ArgCond{Index: rng.IntN(6), Op: Op(1 + rng.IntN(3)), Value: rng.Uint64() >> (rng.IntN(3) * 32)}
					if c.Op == MaskedEqual {
						c.Mask = rng.Uint64() >> (rng.IntN(3) * 32)
						if c.Mask == 0 {
							c.Mask = 0xff
						}
						c.Value &= c.Mask
					}
					conds = append(conds, c)
				}
				p.Rules = append(p.Rules, Rule{Syscall: name, Action: actions[rng.IntN(len(actions))], Args: conds})
			}
			if rng.IntN(2) == 0 {
				p.Rules = append(p.Rules, Rule{Syscall: name, Action: actions[rng.IntN(len(actions))]})
			}
		}
		return p
	}

	policies := map[string]*Policy{"default": DefaultPolicy()}
	for i := range 6 {
		policies["random"+string(rune('0'+i))] = randomPolicy()
	}
	// Alternating actions leave no two neighbouring numbers in one range,
	// and argument checks for every call make the search tree's halves
	// longer than an 8-bit jump.
	long := &Policy{DefaultAction: Errno(unix.EPERM)}
	for i, name := range names {
		long.Rules = append(long.Rules, Rule{Syscall: name, Action: Allow, Args: []ArgCond{{Index: i % 6, Op: Equal, Value: uint64(i)}}})
		if i%2 == 0 {
			long.Rules = append(long.Rules, Rule{Syscall: name, Action: Log})
		}
	}
	policies["long"] = long
	return policies
}

// forEachCall calls f with every system call number (and a few past the
// last) and 32 argument vectors each, drawn around the values p's
// conditions on that call test.
func forEachCall(rng *rand.Rand, p *Policy, f func(n uint32, args [6]uint64)) {
	var vals []uint64
	arg := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return rng.Uint64()
		case 1: // halves of two values, to catch checks that mix them up
			return vals[rng.IntN(len(vals))]&^0xffffffff | vals[rng.IntN(len(vals))]&0xffffffff
		}
		return vals[rng.IntN(len(vals))]
	}
	for n := uint32(0); n <= slices.Max(knownNumbers())+8; n++ {
		vals = interesting(p, n)
		for range 32 {
			var args [6]uint64
			for i := range args {
				args[i] = arg()
			}
			f(n, args)
		}
	}
}

// TestSplitMatchesPolicy checks that the two filters of Split, stacked
// as the kernel stacks them, decide every call as the policy does.
func TestSplitMatchesPolicy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := slices.Sorted(maps.Keys(syscallNumbers()))
	// The kernel runs every filter and keeps the answer whose action
	// comes first in its order of precedence (the lowest as a signed
	// number: kill-process, kill-thread, trap, errno, ..., log, allow),
	// the newest filter's on a tie.
	stacked := func(inner, outer Action) Action {
		if int32(outer&unix.SECCOMP_RET_ACTION_FULL) < int32(inner&unix.SECCOMP_RET_ACTION_FULL) {
			return outer
		}
		return inner
	}
	for name, p := range testPolicies(rng) {
		t.Run(name, func(t *testing.T) {
			split := []string{"clone", "clone3", "unshare", "write", "wait4"}
			for range 20 {
				split = append(split, names[rng.IntN(len(names))])
			}
			outer, inner, err := p.Split(split...)
			require.NoError(t, err)
			outerVM := newFilterVM(t, must(outer.Build()))
			innerFilter := must(inner.Build())
			innerVM := newFilterVM(t, innerFilter)
			t.Logf("inner filter: %d instructions", len(innerFilter))
			forEachCall(rng, p, func(n uint32, args [6]uint64) {
				want := evaluate(p, auditArch, n, args)
				got := stacked(innerVM.run(t, auditArch, n, args[:]...), outerVM.run(t, auditArch, n, args[:]...))
				if got != want {
					t.Fatalf("syscall %d args %#x: the split filters say %v, the policy %v", n, args, got, want)
				}
			})
		})
	}
	_, _, err := DefaultPolicy().Split("no_such_call")
	assert.ErrorIs(t, err, ErrUnknownSyscall)
}

// TestBuildMatchesReference compares the assembled filter with evaluate
// for every system call number and many argument vectors, on the default
// policy and on random policies.
func TestBuildMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	policies := testPolicies(rng)
	long := policies["long"]
	for name, p := range policies {
		t.Run(name, func(t *testing.T) {
			filter, err := p.Build()
			require.NoError(t, err)
			t.Logf("%d rules, %d instructions", len(p.Rules), len(filter))
			vm := newFilterVM(t, filter)
			forEachCall(rng, p, func(n uint32, args [6]uint64) {
				want := evaluate(p, auditArch, n, args)
				if got := vm.run(t, auditArch, n, args[:]...); got != want {
					t.Fatalf("syscall %d args %#x: filter says %v, policy says %v", n, args, got, want)
				}
			})
		})
	}
	longJumps := 0
	for _, insn := range must(long.Build()) {
		if insn.Code == unix.BPF_JMP|unix.BPF_JA {
			longJumps++
		}
	}
	assert.NotZero(t, longJumps, "the long policy should need 32-bit jumps")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDefaultPolicyNames(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the default lists are written in amd64's names; other architectures lack some")
	}
	for _, list := range [][]string{allowed, denied} {
		for _, name := range list {
			_, ok := syscallNumbers()[name]
			assert.True(t, ok, "%q is not an amd64 system call", name)
		}
	}
	both := make(map[string]bool)
	for _, name := range allowed {
		assert.False(t, both[name], "%q is listed twice", name)
		both[name] = true
	}
	for _, name := range denied {
		assert.False(t, both[name], "%q is both allowed and denied, or denied twice", name)
		both[name] = true
	}
	assert.NoError(t, DefaultPolicy().Validate())
}

func TestDefaultPolicyIsFresh(t *testing.T) {
	a, b := DefaultPolicy(), DefaultPolicy()
	a.Rules[0].Action = KillProcess
	for i := range a.Rules {
		if len(a.Rules[i].Args) > 0 {
			a.Rules[i].Args[0].Value = 42
		}
	}
	assert.Equal(t, DefaultPolicy(), b)
}

func TestAllowDenyReplaceRules(t *testing.T) {
	p := DefaultPolicy().Allow("ptrace", "clone").Deny(unix.EACCES, "read", "socket")
	vm := newFilterVM(t, must(p.Build()))
	assert.Equal(t, Allow, vm.run(t, auditArch, nr(t, "ptrace")))
	assert.Equal(t, Allow, vm.run(t, auditArch, nr(t, "clone"), unix.CLONE_NEWUSER))
	assert.Equal(t, Errno(unix.EACCES), vm.run(t, auditArch, nr(t, "read")))
	assert.Equal(t, Errno(unix.EACCES), vm.run(t, auditArch, nr(t, "socket"), unix.AF_INET))
	for _, name := range []string{"ptrace", "clone", "read", "socket"} {
		n := 0
		for _, r := range p.Rules {
			if r.Syscall == name {
				n++
			}
		}
		assert.Equal(t, 1, n, "rules for %s", name)
	}
}

func TestDefaultActionDoesNotOpenDenied(t *testing.T) {
	// A caller who turns the allowlist into a denylist keeps the
	// dangerous calls and argument checks.
	p := DefaultPolicy()
	p.DefaultAction = Allow
	vm := newFilterVM(t, must(p.Build()))
	eperm := Errno(unix.EPERM)
	assert.Equal(t, eperm, vm.run(t, auditArch, nr(t, "mount")))
	assert.Equal(t, eperm, vm.run(t, auditArch, nr(t, "clone"), unix.CLONE_NEWUSER))
	assert.Equal(t, eperm, vm.run(t, auditArch, nr(t, "ioctl"), 0, unix.TIOCSTI))
	assert.Equal(t, eperm, vm.run(t, auditArch, nr(t, "personality"), addrNoRandomize))
	assert.Equal(t, Errno(unix.ENOSYS), vm.run(t, auditArch, nr(t, "clone3")))
	assert.Equal(t, Allow, vm.run(t, auditArch, nr(t, "listns")))
}

func TestValidate(t *testing.T) {
	rule := func(r Rule) *Policy { return &Policy{DefaultAction: Errno(unix.EPERM), Rules: []Rule{r}} }
	tests := []struct {
		name   string
		policy *Policy
		want   string
	}{
		{"unknown syscall", DefaultPolicy().Allow("no_such_call"), "unknown system call"},
		{"bad default", &Policy{DefaultAction: unix.SECCOMP_RET_TRACE}, "unsupported action"},
		{"user notif", rule(Rule{Syscall: "read", Action: unix.SECCOMP_RET_USER_NOTIF}), "unsupported action"},
		{"errno too big", rule(Rule{Syscall: "read", Action: Errno(4096)}), "above 4095"},
		{"index", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Index: 6, Op: Equal}}}), "outside 0..5"},
		{"negative index", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Index: -1, Op: Equal}}}), "outside 0..5"},
		{"zero op", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Index: 0}}}), "unknown op"},
		{"mask on equal", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Op: Equal, Mask: 1}}}), "MaskedEqual only"},
		{"zero mask", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Op: MaskedEqual}}}), "always matches"},
		{"value outside mask", rule(Rule{Syscall: "read", Action: Allow, Args: []ArgCond{{Op: MaskedEqual, Mask: 0xf0, Value: 1}}}), "never matches"},
		{"too many conditions", rule(Rule{Syscall: "read", Action: Allow, Args: make([]ArgCond, maxArgConds+1)}), "at most"},
		{"unreachable", func() *Policy {
			p := DefaultPolicy()
			p.Rules = append(p.Rules, Rule{Syscall: "ioctl", Action: Allow, Args: []ArgCond{{Index: 1, Op: Equal, Value: 1}}})
			return p
		}(), "never applies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, buildErr := tt.policy.Build()
			assert.Equal(t, err, buildErr, "Build reports what Validate does")
		})
	}

	err := DefaultPolicy().Allow("no_such_call").Validate()
	assert.ErrorIs(t, err, ErrUnknownSyscall)
	var re *RuleError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "no_such_call", re.Syscall)
}

func TestProgramTooLong(t *testing.T) {
	p := &Policy{DefaultAction: Errno(unix.EPERM)}
	for name := range syscallNumbers() {
		for v := range 3 {
			p.Rules = append(p.Rules, Rule{Syscall: name, Action: Allow, Args: []ArgCond{{Op: Equal, Value: uint64(v)}}})
		}
	}
	_, err := p.Build()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "limit of 4096")
}

func TestProgram(t *testing.T) {
	prog, err := DefaultPolicy().Program()
	require.NoError(t, err)
	require.Equal(t, int(prog.Fprog.Len), len(prog.Filter))
	assert.Same(t, &prog.Filter[0], prog.Fprog.Filter)
	assert.Equal(t, must(DefaultPolicy().Build()), prog.Filter, "Build is deterministic")

	_, err = (&Policy{DefaultAction: Allow, Rules: []Rule{{Syscall: "nope"}}}).Program()
	assert.True(t, errors.Is(err, ErrUnknownSyscall))
}

func TestActionString(t *testing.T) {
	assert.Equal(t, "allow", Allow.String())
	assert.Equal(t, "errno(EPERM)", Errno(unix.EPERM).String())
	assert.Equal(t, "errno(ENOSYS)", Errno(unix.ENOSYS).String())
	assert.Equal(t, "kill-process", KillProcess.String())
	assert.Equal(t, "kill-thread", KillThread.String())
	assert.Equal(t, "errno(4000)", Errno(4000).String())
}

// BenchmarkDefaultProgram gets the default filter, as a process does once,
// at its first sandbox: prebuilt, or assembled from the policy.
func BenchmarkDefaultProgram(b *testing.B) {
	b.Run("prebuilt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DefaultProgram(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("assembled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DefaultPolicy().Program(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The prebuilt default filter is the default policy as it assembles now.
func TestDefaultFilterIsCurrent(t *testing.T) {
	want, err := DefaultPolicy().Build()
	require.NoError(t, err)
	prog, err := DefaultProgram()
	require.NoError(t, err)
	assert.Equal(t, want, prog.Filter, "the prebuilt filter is stale: run go generate ./internal/seccomp")
	assert.Equal(t, int(prog.Fprog.Len), len(prog.Filter))
	assert.Same(t, &prog.Filter[0], prog.Fprog.Filter)
	if runtime.GOARCH == "amd64" {
		assert.NotEmpty(t, defaultFilter, "amd64 has a prebuilt filter")
		prog.Filter[0].K++ // a copy: the next program is intact
		again, err := DefaultProgram()
		require.NoError(t, err)
		assert.Equal(t, want, again.Filter)
	}
}
