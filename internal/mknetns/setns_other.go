//go:build linux && !amd64 && !arm64

package mknetns

// sysSetns is 0 where this package does not know setns(2)'s number: Make
// makes nothing there.
const sysSetns = 0
