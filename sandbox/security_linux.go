package sandbox

import (
	"errors"
	"sync"
	"syscall"

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
	if f.Disable {
		return nil, nil
	}
	p := seccomp.DefaultPolicy()
	if f.Replace != nil {
		p = &seccomp.Policy{DefaultAction: seccomp.Errno(syscall.EPERM)}
		p.Allow(f.Replace...)
	}
	p.Allow(f.Allow...)
	p.Deny(syscall.EPERM, f.Deny...)
	prog, err := p.Program()
	if err != nil {
		if errors.Is(err, seccomp.ErrUnknownSyscall) {
			return nil, invalid("Syscalls", "%v", err)
		}
		return nil, err
	}
	return prog, nil
}
