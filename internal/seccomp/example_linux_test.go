package seccomp_test

import (
	"errors"
	"fmt"
	"log"
	"slices"

	"github.com/hutchbox/hutch/internal/seccomp"
	"golang.org/x/sys/unix"
)

// A caller starts from the default policy and adjusts it: here it lets
// the sandbox trace its own children, makes io_uring look absent rather
// than forbidden, and lets it use the kernel's crypto sockets.
func ExampleDefaultPolicy() {
	p := seccomp.DefaultPolicy().
		Allow("ptrace").
		Deny(unix.ENOSYS, "io_uring_setup", "io_uring_enter", "io_uring_register")
	p.Rules = slices.DeleteFunc(p.Rules, func(r seccomp.Rule) bool {
		return r.Syscall == "socket" && len(r.Args) == 1 && r.Args[0].Value == unix.AF_ALG
	})

	prog, err := p.Program()
	if err != nil {
		log.Fatal(err)
	}
	// prog.Fprog is what seccomp(SECCOMP_SET_MODE_FILTER) takes; keep prog
	// reachable until the call returns.
	_ = prog
}

// Rules may look at arguments. Here, kill rather than refuse a process
// that tries to create a user namespace with clone.
func ExamplePolicy_argumentRules() {
	p := seccomp.DefaultPolicy()
	kill := seccomp.Rule{
		Syscall: "clone",
		Action:  seccomp.KillProcess,
		Args:    []seccomp.ArgCond{{Index: 0, Op: seccomp.MaskedEqual, Mask: unix.CLONE_NEWUSER, Value: unix.CLONE_NEWUSER}},
	}
	// Rules of one system call apply in order: put it before clone's.
	i := slices.IndexFunc(p.Rules, func(r seccomp.Rule) bool { return r.Syscall == "clone" })
	p.Rules = slices.Insert(p.Rules, i, kill)
	fmt.Println(p.Validate())
	// Output: <nil>
}

func ExamplePolicy_Validate() {
	err := seccomp.DefaultPolicy().Allow("frobnicate").Validate()
	var re *seccomp.RuleError
	if errors.As(err, &re) {
		fmt.Println(re.Syscall, errors.Is(err, seccomp.ErrUnknownSyscall))
	}
	// Output: frobnicate true
}
