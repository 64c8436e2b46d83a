//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"

	"github.com/hutchbox/hutch/rootfs"
)

// oldRootName is reserved inside the sandbox on every system.
const oldRootName = ".hutch-old-root"

var errUnsupported = fmt.Errorf("sandbox: Linux namespaces are needed: %w", errors.ErrUnsupported)

// Run is only implemented on Linux; elsewhere it returns an error that
// matches errors.ErrUnsupported.
func (c *Cmd) Run(ctx context.Context) (*Result, error) {
	if ctx == nil {
		panic("sandbox: nil Context")
	}
	if err := c.validate(false); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// Start is only implemented on Linux.
func (c *Cmd) Start(ctx context.Context) (*Process, error) {
	_, err := c.Run(ctx)
	return nil, err
}

// Process is a command started with Cmd.Start (Linux only).
type Process struct{}

// Wait is only implemented on Linux.
func (p *Process) Wait() (*Result, error) { return nil, errUnsupported }

// Done is only implemented on Linux.
func (p *Process) Done() <-chan struct{} { return nil }

// Signal is only implemented on Linux.
func (p *Process) Signal(syscall.Signal) error { return errUnsupported }

// Sandbox is a long-lived sandbox (Linux only).
type Sandbox struct{}

// ErrClosed is returned for a use of a Sandbox after Close.
var ErrClosed = errors.New("sandbox: closed")

// New is only implemented on Linux.
func New(ctx context.Context, img rootfs.Image, cfg *Config) (*Sandbox, error) {
	return nil, errUnsupported
}

// Command is only implemented on Linux.
func (sb *Sandbox) Command(args ...string) *Cmd { return &Cmd{Args: args, sandbox: sb} }

// Exec is only implemented on Linux.
func (sb *Sandbox) Exec(ctx context.Context, args ...string) (*Result, error) {
	return nil, errUnsupported
}

// Close is only implemented on Linux.
func (sb *Sandbox) Close() error { return nil }

// Dial is only implemented on Linux.
func (sb *Sandbox) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errUnsupported
}

// Forward is only implemented on Linux.
func (sb *Sandbox) Forward(ctx context.Context, port int) (string, error) { return "", errUnsupported }

// ForwardListener is only implemented on Linux.
func (sb *Sandbox) ForwardListener(ctx context.Context, l net.Listener, port int) error {
	return errUnsupported
}

// WriteFile is only implemented on Linux.
func (sb *Sandbox) WriteFile(name string, data []byte, perm fs.FileMode) error { return errUnsupported }

// ReadFile is only implemented on Linux.
func (sb *Sandbox) ReadFile(name string) ([]byte, error) { return nil, errUnsupported }

// CopyIn is only implemented on Linux.
func (sb *Sandbox) CopyIn(src, dst string) error { return errUnsupported }

// CopyOut is only implemented on Linux.
func (sb *Sandbox) CopyOut(src, dst string) error { return errUnsupported }

// GCReport is what CollectGarbage removed.
type GCReport struct{ Cgroups, Locks []string }

// CollectGarbage has nothing to collect where sandboxes cannot run.
func CollectGarbage() (*GCReport, error) { return &GCReport{}, nil }
