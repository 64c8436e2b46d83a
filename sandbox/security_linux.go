package sandbox

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hutchbox/hutch/internal/forkexec"
	"github.com/hutchbox/hutch/internal/seccomp"
)

// credential returns who the command runs as.
func (c *Cmd) credential(userNS bool) (Credential, error) {
	if c.Credential == nil {
		if userNS {
			return Credential{}, nil
		}
		return Credential{UID: DefaultUID, GID: DefaultGID}, nil
	}
	cred := *c.Credential
	if userNS && (cred.UID != 0 || cred.GID != 0 || len(cred.Groups) > 0) {
		return cred, invalid("Credential", "without root only 0:0 is mapped in the sandbox's user namespace (it is the caller's own uid outside)")
	}
	return cred, nil
}

// defaultProgram is the default filter, assembled once (ahead of time,
// on amd64).
var defaultProgram = sync.OnceValues(seccomp.DefaultProgram)

// program is the filter f describes, assembled; nil f is the default.
func (f *SyscallFilter) program() (*seccomp.Program, error) {
	if f == nil {
		return defaultProgram()
	}
	if f.Disable {
		return nil, nil
	}
	return assembledFilters.get(f.key(), func() (*seccomp.Program, error) {
		return assembled(f.policy().Program())
	})
}

// key names what f describes, for f as policy takes it: filters with the
// same key assemble to the same program.
func (f *SyscallFilter) key() string {
	var b strings.Builder
	list := func(tag byte, names []string) {
		b.WriteByte(tag)
		b.WriteString(strconv.Itoa(len(names)))
		for _, n := range names {
			// Length-prefixed: no list of names, however odd, spells
			// another's key.
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(len(n)))
			b.WriteByte(':')
			b.WriteString(n)
		}
	}
	list('a', f.Allow)
	list('d', f.Deny)
	if f.Replace != nil {
		list('r', f.Replace)
	}
	return b.String()
}

// filterCache keeps the last custom filters assembled, by key: a judge
// that gives every run the same filter assembles it once (180 µs and 170
// KB of garbage a run otherwise), a pool once for all its sandboxes.
// Assembled programs are only read.
type filterCache[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

// filterCacheSize bounds each cache; a program that makes filters without
// end evicts one at random for each new one.
const filterCacheSize = 32

var (
	assembledFilters filterCache[*seccomp.Program]
	splitFilters     filterCache[*splitFilter]
)

// get returns key's value, from build the first time. Errors are not
// kept.
func (c *filterCache[T]) get(key string, build func() (T, error)) (T, error) {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok {
		return old, nil // made meanwhile: keep one
	}
	if c.m == nil {
		c.m = make(map[string]T)
	}
	for k := range c.m {
		if len(c.m) < filterCacheSize {
			break
		}
		delete(c.m, k)
	}
	c.m[key] = v
	return v, nil
}

// clone is a copy of f that shares nothing with it.
func (f *SyscallFilter) clone() *SyscallFilter {
	if f == nil {
		return nil
	}
	return &SyscallFilter{Allow: slices.Clone(f.Allow), Deny: slices.Clone(f.Deny),
		Replace: slices.Clone(f.Replace), Disable: f.Disable}
}

// clone is a copy of c that shares nothing with it.
func (c *Credential) clone() *Credential {
	if c == nil {
		return nil
	}
	return &Credential{UID: c.UID, GID: c.GID, Groups: slices.Clone(c.Groups)}
}

// policy is the policy f describes, for f neither nil (the default, see
// defaultProgram and defaultSplit) nor disabled: program and split settle
// those two first.
func (f *SyscallFilter) policy() *seccomp.Policy {
	p := seccomp.DefaultPolicy()
	if f.Replace != nil {
		p = &seccomp.Policy{DefaultAction: seccomp.Errno(syscall.EPERM)}
		p.Allow(f.Replace...)
	}
	p.Allow(f.Allow...)
	p.Deny(syscall.EPERM, f.Deny...)
	return p
}

// assembled passes on an assembled filter, or its error (see
// filterError).
func assembled(prog *seccomp.Program, err error) (*seccomp.Program, error) {
	if err != nil {
		return nil, filterError(err)
	}
	return prog, nil
}

// filterError reports a filter naming a system call the architecture
// does not have as an invalid Syscalls.
func filterError(err error) error {
	if errors.Is(err, seccomp.ErrUnknownSyscall) {
		return invalid("Syscalls", "%v", err)
	}
	return err
}

// splitFilter is f's filter in the two parts a reusable sandbox installs
// (see seccomp.Policy.Split): outer once, by its init, and inner by each
// command on top.
type splitFilter struct{ outer, inner *seccomp.Program }

// defaultSplit is the default filter split, assembled once.
var defaultSplit = sync.OnceValues(func() (*splitFilter, error) { return splitFor(seccomp.DefaultPolicy()) })

// split is f's filter split for a reusable sandbox; nil when f disables
// the filter.
func (f *SyscallFilter) split() (*splitFilter, error) {
	if f == nil {
		return defaultSplit()
	}
	if f.Disable {
		return nil, nil
	}
	return splitFilters.get(f.key(), func() (*splitFilter, error) { return splitFor(f.policy()) })
}

// splitFor splits p at the calls a reusable sandbox's init goes on making
// (forkexec.ReusableSyscalls) and assembles both parts.
func splitFor(p *seccomp.Policy) (*splitFilter, error) {
	outer, inner, err := p.Split(forkexec.ReusableSyscalls...)
	if err != nil {
		return nil, filterError(err)
	}
	var sf splitFilter
	if sf.outer, err = assembled(outer.Program()); err != nil {
		return nil, err
	}
	if sf.inner, err = assembled(inner.Program()); err != nil {
		return nil, err
	}
	return &sf, nil
}
