//go:build !linux

package cgroup

import (
	"os"
	"time"
)

// Cgroups are Linux's: elsewhere DetectMode finds none, Enabled says so and
// New fails with an error that wraps errors.ErrUnsupported.

var errNotLinux = unsupported("cgroups need Linux")

// DetectMode returns Unavailable: cgroups exist only on Linux.
func DetectMode() Mode { return Unavailable }

// Enabled returns an *UnavailableError: cgroups exist only on Linux.
func Enabled() error {
	return &UnavailableError{Mode: Unavailable, Reason: "not Linux", Err: errNotLinux}
}

// Available returns an *UnavailableError: cgroups exist only on Linux.
func Available() error { return Enabled() }

// Manager is one group; on this system there are none.
type Manager struct{ path string }

// New fails: cgroups exist only on Linux.
func New(cfg Config) (*Manager, error) {
	return nil, &Error{Op: "create", Path: "/" + cfg.Parent + "/" + cfg.Name, Err: errNotLinux}
}

// Files fails: cgroups exist only on Linux.
func Files(cfg Config) (join []string, dir string, err error) {
	return nil, "", &Error{Op: "create", Path: "/" + cfg.Parent + "/" + cfg.Name, Err: errNotLinux}
}

// Open fails: cgroups exist only on Linux.
func Open(cfg Config) (*Manager, error) {
	return nil, &Error{Op: "open", Path: "/" + cfg.Parent + "/" + cfg.Name, Err: errNotLinux}
}

func (m *Manager) fail(op string) error { return &Error{Op: op, Path: m.path, Err: errNotLinux} }

// Mode returns Unavailable.
func (m *Manager) Mode() Mode { return Unavailable }

// Path returns the group's path.
func (m *Manager) Path() string { return m.path }

// AddProc fails: cgroups exist only on Linux.
func (m *Manager) AddProc(pid int) error { return m.fail("add process") }

// OpenDir fails: cgroups exist only on Linux.
func (m *Manager) OpenDir() (*os.File, error) { return nil, m.fail("open directory") }

// OpenJoinFiles fails: cgroups exist only on Linux.
func (m *Manager) OpenJoinFiles() ([]*os.File, error) { return nil, m.fail("open join files") }

// CPUUsage fails: cgroups exist only on Linux.
func (m *Manager) CPUUsage() (time.Duration, error) { return 0, m.fail("read CPU usage") }

// CPUCounter reads a group's CPU usage; on this system there is none.
type CPUCounter struct{}

// OpenCPUCounter fails: cgroups exist only on Linux.
func (m *Manager) OpenCPUCounter() (*CPUCounter, error) { return nil, m.fail("read CPU usage") }

// Read fails: cgroups exist only on Linux.
func (c *CPUCounter) Read() (time.Duration, error) { return 0, errNotLinux }

// Close does nothing.
func (c *CPUCounter) Close() error { return nil }

// Stat fails: cgroups exist only on Linux.
func (m *Manager) Stat(mask StatMask) (*Stats, error) { return nil, m.fail("read stats") }

// Kill fails: cgroups exist only on Linux.
func (m *Manager) Kill() error { return m.fail("kill") }

// Delete fails: cgroups exist only on Linux.
func (m *Manager) Delete() error { return m.fail("delete") }
