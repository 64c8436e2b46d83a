package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// An Action is what the kernel does with a system call: one of the
// SECCOMP_RET_* values, with its data in the low 16 bits.
type Action uint32

// Actions a rule can take. Errno builds the one that makes the call fail.
const (
	// Allow runs the system call.
	Allow Action = unix.SECCOMP_RET_ALLOW
	// Log runs the system call and logs it to the audit log.
	Log Action = unix.SECCOMP_RET_LOG
	// Trap sends SIGSYS to the thread instead of running the call.
	Trap Action = unix.SECCOMP_RET_TRAP
	// KillThread kills the calling thread.
	KillThread Action = unix.SECCOMP_RET_KILL_THREAD
	// KillProcess kills the whole process, as if by SIGSYS.
	KillProcess Action = unix.SECCOMP_RET_KILL_PROCESS
)

// maxErrno is the largest errno the kernel returns as is (MAX_ERRNO).
const maxErrno = 4095

// Errno returns the action that makes the system call fail with e without
// running it. Errno(0) makes it return 0, also without running it.
func Errno(e syscall.Errno) Action {
	return Action(unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA)
}

// String returns the action as "allow", "errno(EPERM)" and so on.
func (a Action) String() string {
	switch a & unix.SECCOMP_RET_ACTION_FULL {
	case Allow:
		return "allow"
	case Log:
		return "log"
	case Trap:
		return "trap"
	case KillThread:
		return "kill-thread"
	case KillProcess:
		return "kill-process"
	case unix.SECCOMP_RET_ERRNO:
		e := syscall.Errno(a & unix.SECCOMP_RET_DATA)
		if name := unix.ErrnoName(e); name != "" {
			return "errno(" + name + ")"
		}
		return fmt.Sprintf("errno(%d)", uint32(e))
	}
	return fmt.Sprintf("action(%#x)", uint32(a))
}

func (a Action) validate() error {
	switch a & unix.SECCOMP_RET_ACTION_FULL {
	case Allow, Log, Trap, KillThread, KillProcess:
		return nil
	case unix.SECCOMP_RET_ERRNO:
		if a&unix.SECCOMP_RET_DATA > maxErrno {
			return fmt.Errorf("errno %d is above %d", a&unix.SECCOMP_RET_DATA, maxErrno)
		}
		return nil
	}
	// SECCOMP_RET_TRACE and SECCOMP_RET_USER_NOTIF need a tracer or a
	// listener that hutch does not provide.
	return fmt.Errorf("unsupported action %#x", uint32(a))
}

// An Op compares a system call argument with a value.
type Op uint8

// Comparisons. The kernel passes every argument as 64 bits; to compare an
// argument of a 32-bit C type (int, unsigned int), whose upper half the
// kernel ignores, use MaskedEqual with Mask 0xffffffff.
const (
	// Equal matches when the argument equals Value.
	Equal Op = iota + 1
	// NotEqual matches when the argument differs from Value.
	NotEqual
	// MaskedEqual matches when the argument ANDed with Mask equals Value.
	MaskedEqual
)

func (op Op) String() string {
	switch op {
	case Equal:
		return "=="
	case NotEqual:
		return "!="
	case MaskedEqual:
		return "&mask=="
	}
	return fmt.Sprintf("Op(%d)", uint8(op))
}

// An ArgCond is a condition on one argument of a system call.
type ArgCond struct {
	// Index is the argument's position, 0 to 5.
	Index int
	Op    Op
	Value uint64
	// Mask is used by MaskedEqual only, and must be zero for other ops.
	Mask uint64
}

// maxArgConds bounds the conditions of one rule, so that a failed
// condition can always reach the next rule with an 8-bit jump.
const maxArgConds = 16

func (c ArgCond) validate() error {
	if c.Index < 0 || c.Index > 5 {
		return fmt.Errorf("argument index %d is outside 0..5", c.Index)
	}
	switch c.Op {
	case Equal, NotEqual:
		if c.Mask != 0 {
			return fmt.Errorf("arg%d %v: Mask is used by MaskedEqual only", c.Index, c.Op)
		}
	case MaskedEqual:
		if c.Mask == 0 {
			return fmt.Errorf("arg%d: MaskedEqual with a zero Mask always matches", c.Index)
		}
		if c.Value&^c.Mask != 0 {
			return fmt.Errorf("arg%d: MaskedEqual value %#x has bits outside mask %#x and never matches", c.Index, c.Value, c.Mask)
		}
	default:
		return fmt.Errorf("arg%d: unknown op %d", c.Index, uint8(c.Op))
	}
	return nil
}

// A Rule gives the action for a system call, when all of Args match (or
// always, when Args is empty).
type Rule struct {
	// Syscall is the kernel's name of the system call ("openat"), as in
	// golang.org/x/sys/unix's SYS_* constants, lower-cased.
	Syscall string
	Action  Action
	// Args are conditions that must all hold for the rule to apply.
	Args []ArgCond
}

// A Policy is a seccomp filter before assembly.
//
// The rules of one system call are tried in the order they appear in
// Rules; the first whose conditions all hold gives the action. A system
// call that no rule matches gets DefaultAction. A rule that follows an
// unconditional rule for the same system call could never apply, and is
// an error.
type Policy struct {
	DefaultAction Action
	Rules         []Rule
}

// ErrUnknownSyscall is wrapped by the error for a rule naming a system
// call that the architecture does not have.
var ErrUnknownSyscall = errors.New("unknown system call")

// A RuleError reports a rule that cannot be assembled.
type RuleError struct {
	Index   int    // the rule's position in Policy.Rules
	Syscall string // the rule's system call
	Err     error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("seccomp: rule %d (%s): %v", e.Index, e.Syscall, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Allow makes each named system call allowed unconditionally, replacing
// any rules the policy has for it, and returns p. A name the architecture
// does not know is reported by Validate and Build.
//
// Allowing clone this way also allows it to create namespaces; to relax
// clone's check, edit its rules in p.Rules instead.
func (p *Policy) Allow(names ...string) *Policy {
	return p.set(Allow, names)
}

// Deny makes each named system call fail with errno, replacing any rules
// the policy has for it, and returns p.
func (p *Policy) Deny(errno syscall.Errno, names ...string) *Policy {
	return p.set(Errno(errno), names)
}

func (p *Policy) set(a Action, names []string) *Policy {
	for _, name := range names {
		p.Rules = slices.DeleteFunc(p.Rules, func(r Rule) bool { return r.Syscall == name })
		p.Rules = append(p.Rules, Rule{Syscall: name, Action: a})
	}
	return p
}

// Validate reports the first problem that would keep p from being built:
// an invalid action, an unknown system call, a malformed condition, or a
// rule that could never apply. Errors about one rule are *RuleError.
func (p *Policy) Validate() error {
	if len(syscallTable) == 0 {
		return fmt.Errorf("seccomp: no filter for %s: %w", runtime.GOARCH, errors.ErrUnsupported)
	}
	if err := p.DefaultAction.validate(); err != nil {
		return fmt.Errorf("seccomp: default action: %w", err)
	}
	closed := make(map[string]int) // syscall -> index of its unconditional rule
	for i, r := range p.Rules {
		fail := func(err error) error { return &RuleError{Index: i, Syscall: r.Syscall, Err: err} }
		if _, ok := syscallNumbers()[r.Syscall]; !ok {
			return fail(fmt.Errorf("%w on %s", ErrUnknownSyscall, runtime.GOARCH))
		}
		if err := r.Action.validate(); err != nil {
			return fail(err)
		}
		if j, ok := closed[r.Syscall]; ok {
			return fail(fmt.Errorf("never applies: rule %d matches every %s call first", j, r.Syscall))
		}
		if len(r.Args) > maxArgConds {
			return fail(fmt.Errorf("%d argument conditions, at most %d", len(r.Args), maxArgConds))
		}
		for _, c := range r.Args {
			if err := c.validate(); err != nil {
				return fail(err)
			}
		}
		if len(r.Args) == 0 {
			closed[r.Syscall] = i
		}
	}
	return nil
}

// Split divides p into two policies that, stacked, decide every system
// call as p does. outer allows the calls named and decides every other
// one as p; inner decides the calls named as p does (by p's rules for
// them, then p's default action) and allows every other one. A process
// under both filters is under p exactly: the kernel runs each filter a
// process has and takes the most restrictive answer, and for every call
// one of the two allows it.
//
// A process that must go on making the named calls once it is filtered
// (a sandbox's init that forks one command after another, each into a
// new IPC namespace) installs outer once; each child installs the short
// inner filter on top, the last thing before it executes anything. The
// child then pays for a filter of a few instructions instead of p's.
func (p *Policy) Split(names ...string) (outer, inner *Policy, err error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	named := make(map[string]bool, len(names))
	for _, name := range names {
		if _, ok := syscallNumbers()[name]; !ok {
			return nil, nil, fmt.Errorf("seccomp: split on %s: %w on %s", name, ErrUnknownSyscall, runtime.GOARCH)
		}
		named[name] = true
	}
	outer = &Policy{DefaultAction: p.DefaultAction}
	inner = &Policy{DefaultAction: Allow}
	closed := make(map[string]bool) // named calls with an unconditional rule in p
	for _, r := range p.Rules {
		if !named[r.Syscall] {
			outer.Rules = append(outer.Rules, r)
			continue
		}
		inner.Rules = append(inner.Rules, r)
		if len(r.Args) == 0 {
			closed[r.Syscall] = true
		}
	}
	for name := range named {
		outer.Rules = append(outer.Rules, Rule{Syscall: name, Action: Allow})
		if !closed[name] {
			inner.Rules = append(inner.Rules, Rule{Syscall: name, Action: p.DefaultAction})
		}
	}
	return outer, inner, nil
}
