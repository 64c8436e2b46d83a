package sandbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
)

// A process's first cold run makes its cgroup on a guess, without a probe
// group before it, and later runs go by what it found: its group where the
// process can make groups; where it cannot, the run still runs, on rlimits,
// and so do the runs after it.
func TestFirstRunTellsCgroups(t *testing.T) {
	img := rootfs.Dir(testenv.BusyboxRoot(t))
	cgroupState.Lock()
	saved := struct {
		known bool
		err   error
	}{cgroupState.known, cgroupState.err}
	cgroupState.known, cgroupState.err = false, nil
	cgroupState.Unlock()
	t.Cleanup(func() {
		cgroupState.Lock()
		cgroupState.known, cgroupState.err = saved.known, saved.err
		cgroupState.Unlock()
	})
	probe := cgroup.Enabled() // what the probe, not made by the runs, says
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := (&Cmd{Image: img, Args: []string{"true"}, Limits: Limits{Memory: 64 << 20}}).Run(ctx)
		cancel()
		var se *SetupError
		if errors.As(err, &se) && se.Stage == "clone" {
			t.Skipf("this machine cannot create a sandbox: %v", err)
		}
		require.NoError(t, err, "run %d", i)
		assert.Equal(t, OK, res.Status)
		cgroupState.Lock()
		known, cerr := cgroupState.known, cgroupState.err
		cgroupState.Unlock()
		assert.True(t, known, "the first run told")
		if probe == nil {
			assert.NoError(t, cerr)
			assert.Equal(t, "cgroup", res.Enforced["Memory"])
		} else {
			assert.Error(t, cerr)
			assert.Equal(t, "rlimit", res.Enforced["Memory"])
		}
	}
}
