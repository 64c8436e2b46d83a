// Package sandbox runs a command in an isolated Linux sandbox and reports
// how it ended and what it used.
//
//	res, err := sandbox.Run(ctx, rootfs.Host(), []string{"sh", "-c", "echo hi"},
//		sandbox.Limits{WallTime: 5 * time.Second})
//
// The command runs in new mount, PID, UTS, IPC, network and cgroup
// namespaces, on a root filesystem made of the image's read-only layers
// plus a throwaway writable layer on a size-bounded tmpfs. It is not PID 1:
// a minimal init, part of the same clone, is PID 1 of the namespace, so
// signals behave as on a normal system, and when the command ends the
// whole namespace ends with it.
//
// No re-exec of the calling binary, no helper binary and no hook in main
// are needed: the child is a raw clone that runs only system calls
// between clone and execve. Run is safe to call from many goroutines.
//
// [Run] is the short form of [Cmd.Run]; a [Cmd] adds standard input,
// streamed output, environment, working directory, hostname and bind
// mounts. Failures before the command starts are a *[SetupError] naming
// the step that failed, bad arguments a *[ConfigError].
package sandbox
