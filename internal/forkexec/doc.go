// Package forkexec starts a sandboxed process tree with a raw clone.
//
// The child of the clone becomes PID 1 of new namespaces. It runs a short
// program of setup steps (mounts, pivot_root, hostname, loopback) prepared
// by the parent, forks the command, and stays behind as a minimal init that
// reaps every process of the namespace. When the command ends, init sends
// its wait status and resource usage to the parent through a pipe and
// exits, and the kernel kills whatever is left in the namespace.
//
// Between clone and execve the child is a copy of a multi-threaded Go
// process with only one thread: it may not allocate, grow its stack, or
// call into the Go runtime. Everything it needs is prepared before the
// clone as byte pointers, and it uses raw system calls only, in the manner
// of the standard library's forkAndExecInChild1. A failure is reported
// through a pipe as the index of the failing step and its errno.
package forkexec
