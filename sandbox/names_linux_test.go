package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
)

// The smallest free number goes out first, and a returned one comes back.
func TestNameSet(t *testing.T) {
	var s nameSet
	assert.Equal(t, []uint64{1, 2, 3}, []uint64{s.get(), s.get(), s.get()})
	s.put(2)
	assert.Equal(t, uint64(2), s.get())
	s.put(3)
	s.put(1)
	assert.Equal(t, []uint64{1, 3, 4}, []uint64{s.get(), s.get(), s.get()})
}

// A name whose group or lock may be left is never handed out again.
func TestRunNameStale(t *testing.T) {
	h := takeRunName()
	h.stale = true
	h.giveBack()
	for range 3 {
		n := runNames.get()
		defer runNames.put(n)
		assert.NotEqual(t, h.n, n)
	}
}

// Runs one after another reuse one cgroup name: each name removed leaves a
// negative dentry per v1 hierarchy and one for its lock file, which unique
// names piled up by the million.
func TestRunNamesReused(t *testing.T) {
	img := cgroupImage(t)
	var names []string
	for range 3 {
		names = append(names, runTrueIn(t, &Cmd{Image: img, Args: []string{"/bin/true"}}))
	}
	assert.Equal(t, []string{names[0], names[0], names[0]}, names)
}

// cgroupImage is a busybox image, on a machine where runs as root get
// cgroups of their own; the test is skipped elsewhere.
func cgroupImage(t *testing.T) rootfs.Image {
	t.Helper()
	testenv.RequireRoot(t)
	if err := cgroupErr(); err != nil {
		t.Skipf("no cgroups here: %v", err)
	}
	return rootfs.Dir(testenv.BusyboxRoot(t))
}

// runTrueIn runs c, which must succeed, and returns its cgroup's name.
func runTrueIn(t *testing.T, c *Cmd) string {
	t.Helper()
	r, err := c.start(context.Background())
	testenv.SkipIfUnsupported(t, "sandbox", err)
	require.NoError(t, err)
	require.NotNil(t, r.cgroup)
	res, err := r.wait()
	require.NoError(t, err)
	require.Equal(t, OK, res.Status)
	return r.cgroup.Name
}

// A sandbox's commands, one after another, reuse one cgroup name too, and
// so do sandboxes.
func TestSandboxNamesReused(t *testing.T) {
	img := cgroupImage(t)
	var sbNames []string
	for range 2 {
		sb, err := New(context.Background(), img, nil)
		testenv.SkipIfUnsupported(t, "sandbox", err)
		require.NoError(t, err)
		sbNames = append(sbNames, sb.cg.Path())
		var names []string
		for range 3 {
			names = append(names, runTrueIn(t, sb.Command("/bin/true")))
		}
		assert.Equal(t, []string{names[0], names[0], names[0]}, names)
		require.NoError(t, sb.Close())
	}
	assert.Equal(t, sbNames[0], sbNames[1])
}

// Lock names are reused: a lock that CollectGarbage opened, then released
// by its live owner and its name taken by a new lock, is not taken for a
// dead owner's (it would have removed the new run's group).
func TestDeadLockReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run-1-1.lock")
	require.NoError(t, os.WriteFile(path, []byte(`{"cgroup_name":"run-1-1","pid":1}`), 0o600))
	opened, err := os.Open(path)
	require.NoError(t, err)
	defer opened.Close()
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.WriteFile(path, []byte(`{"cgroup_name":"run-1-1","pid":2}`), 0o600))
	_, dead := deadLock(opened, path)
	assert.False(t, dead, "a released lock, its name taken again")

	again, err := os.Open(path)
	require.NoError(t, err)
	defer again.Close()
	rec, dead := deadLock(again, path)
	assert.True(t, dead, "the unlocked file at the name")
	assert.Equal(t, 2, rec.Pid)
}
