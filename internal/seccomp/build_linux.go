package seccomp

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data {int nr; u32 arch; u64 instruction_pointer;
// u64 args[6]}, which the kernel lays out in native byte order. Both
// supported architectures are little-endian: the lower half of an
// argument comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// maxInsns is the kernel's limit on the length of a filter (BPF_MAXINSNS).
const maxInsns = 4096

// maxSkip is the longest forward jump of a conditional BPF instruction.
const maxSkip = math.MaxUint8

// unknownAction answers a number that is not a system call of the
// architecture, as a kernel without it would.
var unknownAction = Errno(unix.ENOSYS)

// Program is an assembled filter in the form seccomp(2) takes. Fprog
// points into Filter: keep the Program reachable until the filter is
// installed (runtime.KeepAlive after the raw system call).
type Program struct {
	Filter []unix.SockFilter
	Fprog  unix.SockFprog
}

// Program assembles p into a Program ready to install.
func (p *Policy) Program() (*Program, error) {
	filter, err := p.Build()
	if err != nil {
		return nil, err
	}
	return newProgram(filter), nil
}

// newProgram is a Program over filter, which it keeps.
func newProgram(filter []unix.SockFilter) *Program {
	prog := &Program{Filter: filter}
	prog.Fprog = unix.SockFprog{Len: uint16(len(filter)), Filter: &prog.Filter[0]}
	return prog
}

// Build validates p and assembles it into a classic BPF program for
// seccomp(SECCOMP_SET_MODE_FILTER).
//
// The program kills the process when the call comes from another
// architecture or ABI (int 0x80 and the x32 ABI on x86-64). It then
// finds the call's number by binary search over ranges of numbers that
// share an action, and either returns that action or runs the argument
// checks of the call's rules. Numbers that are not system calls of the
// architecture get ENOSYS. The program is at most 4096 instructions
// (BPF_MAXINSNS); a longer one is an error.
func (p *Policy) Build() ([]unix.SockFilter, error) {
	insns, err := p.instructions()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assembling the filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return filter, nil
}

// numberRange is the numbers from start up to the next range's start,
// and the code that handles them.
type numberRange struct {
	start uint32
	code  []bpf.Instruction
}

// sysEntry is one system call of syscallTable.
type sysEntry struct {
	name string
	nr   uint32
}

// syscallNumbers maps the name of each system call in syscallTable to its
// number. It is made on first use, not when the program starts: a program
// that installs only the default filter, assembled ahead of time, never
// needs it (a map literal of this size took 38 µs of every start).
var syscallNumbers = sync.OnceValue(func() map[string]uint32 {
	m := make(map[string]uint32, len(syscallTable))
	for _, e := range syscallTable {
		m[e.name] = e.nr
	}
	return m
})

var knownNumbers = sync.OnceValue(func() []uint32 {
	nums := make([]uint32, 0, len(syscallTable))
	for _, e := range syscallTable {
		nums = append(nums, e.nr)
	}
	slices.Sort(nums)
	return slices.Compact(nums)
})

func (p *Policy) instructions() ([]bpf.Instruction, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	rules := make(map[uint32][]Rule, len(p.Rules))
	for _, r := range p.Rules {
		n := syscallNumbers()[r.Syscall]
		rules[n] = append(rules[n], r)
	}

	// Most system calls come down to one of a few lone returns: each is
	// made once and shared (a filter is built once per process, but this
	// was most of its 1,467 allocations).
	var lones []bpf.Instruction
	lone := func(a Action) []bpf.Instruction {
		r := ret(a)
		for i := range lones {
			if lones[i] == r {
				return lones[i : i+1 : i+1]
			}
		}
		lones = append(lones, r)
		return []bpf.Instruction{r}
	}
	var ranges []numberRange
	add := func(start uint32, code []bpf.Instruction) {
		if last := len(ranges) - 1; last >= 0 && len(code) == 1 && len(ranges[last].code) == 1 && ranges[last].code[0] == code[0] {
			return // the same lone return: extend the previous range
		}
		ranges = append(ranges, numberRange{start: start, code: code})
	}
	next := uint32(0) // the first number no range covers yet
	for _, n := range knownNumbers() {
		if n > next {
			add(next, lone(unknownAction))
		}
		code, err := syscallCode(rules[n], p.DefaultAction, lone)
		if err != nil {
			return nil, err
		}
		add(n, code)
		next = n + 1
	}
	add(next, lone(unknownAction))

	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1},
		ret(KillProcess),
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	if x32Bit != 0 {
		// x32 calls come with the native arch and this bit set in the
		// number. Only syscall(-1), which no kernel implements, has it
		// legitimately.
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 3},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: math.MaxUint32, SkipFalse: 1},
			ret(unknownAction),
			ret(KillProcess),
		)
	}
	prog = append(prog, search(ranges)...)
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("seccomp: the filter has %d instructions, more than the kernel's limit of %d", len(prog), maxInsns)
	}
	return prog, nil
}

func ret(a Action) bpf.Instruction { return bpf.RetConstant{Val: uint32(a)} }

// search returns code that, with the number in A, runs the code of the
// range it falls in: a binary search whose comparisons jump forward over
// the lower half, with a 32-bit jump where it is longer than 255.
func search(ranges []numberRange) []bpf.Instruction {
	if len(ranges) == 1 {
		return ranges[0].code
	}
	mid := len(ranges) / 2
	lower, upper := search(ranges[:mid]), search(ranges[mid:])
	pivot := ranges[mid].start
	code := make([]bpf.Instruction, 0, 2+len(lower)+len(upper))
	if len(lower) <= maxSkip {
		code = append(code, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: pivot, SkipTrue: uint8(len(lower))})
	} else {
		code = append(code,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: pivot, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(lower))})
	}
	code = append(code, lower...)
	return append(code, upper...)
}

// syscallCode returns the code for one system call, given its rules in
// order: a lone return (from lone) when the first rule is unconditional or
// there is none, else each rule's checks in turn and the default action
// after them.
func syscallCode(rules []Rule, def Action, lone func(Action) []bpf.Instruction) ([]bpf.Instruction, error) {
	var code []bpf.Instruction
	for _, r := range rules {
		if len(r.Args) == 0 {
			if code == nil {
				return lone(r.Action), nil
			}
			return append(code, ret(r.Action)), nil
		}
		c, err := ruleCode(r)
		if err != nil {
			return nil, err
		}
		code = append(code, c...)
	}
	if code == nil {
		return lone(def), nil
	}
	return append(code, ret(def)), nil
}

// ruleCode returns a rule's checks followed by the return of its action.
// A failing check jumps past that return, to whatever follows.
func ruleCode(r Rule) ([]bpf.Instruction, error) {
	type pending struct {
		at                  int
		failTrue, failFalse bool
	}
	var (
		code  []bpf.Instruction
		fails []pending
	)
	jump := func(j bpf.JumpIf, failTrue, failFalse bool) {
		if failTrue || failFalse {
			fails = append(fails, pending{len(code), failTrue, failFalse})
		}
		code = append(code, j)
	}
	for _, c := range r.Args {
		lo, hi := offArgs+8*uint32(c.Index), offArgs+8*uint32(c.Index)+4
		switch c.Op {
		case Equal:
			code = append(code, bpf.LoadAbsolute{Off: hi, Size: 4})
			jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c.Value >> 32)}, false, true)
			code = append(code, bpf.LoadAbsolute{Off: lo, Size: 4})
			jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c.Value)}, false, true)
		case NotEqual:
			// Holds when either half differs.
			code = append(code, bpf.LoadAbsolute{Off: hi, Size: 4})
			jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c.Value >> 32), SkipFalse: 2}, false, false)
			code = append(code, bpf.LoadAbsolute{Off: lo, Size: 4})
			jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c.Value)}, true, false)
		case MaskedEqual:
			for _, half := range []struct {
				off         uint32
				mask, value uint32
			}{{hi, uint32(c.Mask >> 32), uint32(c.Value >> 32)}, {lo, uint32(c.Mask), uint32(c.Value)}} {
				if half.mask == 0 {
					continue // Validate made sure the value is zero there too
				}
				code = append(code, bpf.LoadAbsolute{Off: half.off, Size: 4})
				if half.mask != math.MaxUint32 {
					code = append(code, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: half.mask})
				}
				jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: half.value}, false, true)
			}
		}
	}
	code = append(code, ret(r.Action))
	// The failure target is the first instruction after the return.
	for _, f := range fails {
		skip := len(code) - f.at - 1
		if skip > maxSkip {
			return nil, fmt.Errorf("seccomp: %s: argument checks too long (%d instructions)", r.Syscall, len(code))
		}
		j := code[f.at].(bpf.JumpIf)
		if f.failTrue {
			j.SkipTrue = uint8(skip)
		}
		if f.failFalse {
			j.SkipFalse = uint8(skip)
		}
		code[f.at] = j
	}
	return code, nil
}

// DefaultProgram is DefaultPolicy().Program(), assembled ahead of time
// where it can be (mkdefault.go writes it for amd64; other architectures
// assemble it here).
func DefaultProgram() (*Program, error) {
	if len(defaultFilter) == 0 {
		return DefaultPolicy().Program()
	}
	return newProgram(slices.Clone(defaultFilter[:])), nil
}
