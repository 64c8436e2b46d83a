//go:build !linux

package forkexec

// ShareCallerMemory has nothing to share where there are no sandboxes:
// it does nothing.
func ShareCallerMemory(title string) error { return nil }
