//go:build linux && !amd64

package seccomp

import "golang.org/x/sys/unix"

// defaultFilter is empty where no prebuilt filter is generated
// (mkdefault.go): DefaultProgram assembles the policy.
var defaultFilter [0]unix.SockFilter
