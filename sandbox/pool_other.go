//go:build !linux

package sandbox

import (
	"context"

	"github.com/hutchbox/hutch/rootfs"
)

// Pool runs commands in sandboxes set up ahead of time (Linux only).
type Pool struct{}

// NewPool is only implemented on Linux; elsewhere it returns an error that
// matches errors.ErrUnsupported.
func NewPool(img rootfs.Image, size int, tmpl *Cmd) (*Pool, error) {
	if size <= 0 {
		return nil, invalid("size", "%d is not positive", size)
	}
	return nil, errUnsupported
}

// Run is only implemented on Linux.
func (p *Pool) Run(ctx context.Context, c *Cmd) (*Result, error) { return nil, errUnsupported }

// Stats is only implemented on Linux.
func (p *Pool) Stats() PoolStats { return PoolStats{} }

// Err is only implemented on Linux.
func (p *Pool) Err() error { return errUnsupported }

// Close is only implemented on Linux.
func (p *Pool) Close() error { return nil }
