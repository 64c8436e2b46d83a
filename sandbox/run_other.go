//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
)

// Run is only implemented on Linux; elsewhere it returns an error that
// matches errors.ErrUnsupported.
func (c *Cmd) Run(ctx context.Context) (*Result, error) {
	if ctx == nil {
		panic("sandbox: nil Context")
	}
	if err := c.validate(false); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("sandbox: Linux namespaces are needed: %w", errors.ErrUnsupported)
}

// oldRootName is reserved inside the sandbox on every system.
const oldRootName = ".hutch-old-root"
