package sandbox

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
)

// A pool's filter is split and assembled once: every sandbox it prepares
// installs that one split, and a change to the caller's template after
// NewPool does not reach the pool.
func TestPoolFilterSplitOnce(t *testing.T) {
	if os.Geteuid() != 0 || !haveLastPid() {
		t.Skip("a pool's sandboxes serve one run each here: no split filter")
	}
	img := rootfs.Dir(testenv.BusyboxRoot(t))
	filter := &SyscallFilter{Deny: []string{"chmod"}}
	tmpl := &Cmd{Syscalls: filter}
	p, err := NewPool(img, 2, tmpl)
	require.NoError(t, err)
	filter.Deny[0] = "fchmodat"
	filter.Allow = append(filter.Allow, "unshare")
	split, err := p.tmpl.Syscalls.split()
	require.NoError(t, err)
	require.NotNil(t, split)
	assert.Equal(t, []string{"chmod"}, p.tmpl.Syscalls.Deny, "the pool kept its own copy")
	assert.Nil(t, p.tmpl.Syscalls.Allow)

	// Taken and never run, the sandboxes are left to the test once the
	// pool has closed.
	var taken []*pooledSandbox
	t.Cleanup(func() {
		p.Close()
		for _, ps := range taken {
			ps.discard()
		}
	})
	for range 2 {
		var ps *pooledSandbox
		select {
		case ps = <-p.ready:
		case <-time.After(time.Minute):
			p.errMu.Lock()
			err := p.err
			p.errMu.Unlock()
			t.Fatalf("no sandbox ready after a minute; last error: %v", err)
		}
		taken = append(taken, ps)
		assert.Same(t, split, ps.plan.split, "a prepared sandbox installs the pool's split")
		assert.Nil(t, ps.plan.filter, "nothing assembled the whole filter")
	}
}
