package sandbox

import (
	"errors"
	"slices"
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

// program assembles the filter f describes; nil f is the default.
func (f *SyscallFilter) program() (*seccomp.Program, error) {
	if f == nil {
		return defaultProgram()
	}
	p := f.policy()
	if p == nil {
		return nil, nil
	}
	return assembled(p.Program())
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

// policy is the policy f, not nil, describes; nil when f disables the
// filter. (Nil f, the default, is assembled once: defaultProgram,
// defaultSplit.)
func (f *SyscallFilter) policy() *seccomp.Policy {
	if f.Disable {
		return nil
	}
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
	p := f.policy()
	if p == nil {
		return nil, nil
	}
	return splitFor(p)
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
