// Package seccomp builds the seccomp filter that hutch installs in a
// sandboxed process just before execve.
//
// A [Policy] is an allowlist: a default action for every system call the
// policy does not name, and [Rule]s that allow or deny named system calls,
// optionally only when their arguments match ([ArgCond]). [DefaultPolicy]
// is the hardened default, based on Docker's default profile and tighter
// where a sandbox needs no more: no mounts, no new namespaces, no kernel
// keyrings, no BPF, perf or io_uring, no ptrace, no module loading, no
// changes to the clock.
//
// [Policy.Build] assembles the policy into classic BPF with
// golang.org/x/net/bpf, in pure Go. The program checks the architecture
// first and kills the process on any other ABI (on x86-64 also the x32
// ABI and int 0x80), then finds the system call by binary search over
// ranges of syscall numbers, so that a call costs about a dozen
// instructions whatever the size of the policy (the default policy
// assembles to under 200).
//
// Errno policy: a known system call that the policy does not allow fails
// with EPERM (the default action); clone3 fails with ENOSYS, so that libc
// falls back to clone, whose flags the filter can check; a number that is
// not a system call of the architecture (a gap in the table, or newer than
// golang.org/x/sys knows) fails with ENOSYS, as it would on a kernel that
// lacks it, so that programs fall back to older calls.
//
// The package is Linux-only; on other systems it is empty.
package seccomp

//go:generate go run mksyscalls.go
//go:generate go run mkdefault.go
