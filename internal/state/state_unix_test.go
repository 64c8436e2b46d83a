//go:build unix

package state

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnsureIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	top := filepath.Join(t.TempDir(), "state")
	t.Setenv(EnvDir, top)

	dir, err := Ensure("images")
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o755), fi.Mode().Perm())
}

func TestEnsureRefusesSharedTop(t *testing.T) {
	top := filepath.Join(t.TempDir(), "state")
	t.Setenv(EnvDir, top)
	require.NoError(t, os.Mkdir(top, 0o700))

	require.NoError(t, os.Chmod(top, 0o1777))
	_, err := Ensure("images")
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.ErrorContains(t, err, "writable by group or others")

	require.NoError(t, os.Chmod(top, 0o755))
	_, err = Ensure("images")
	assert.NoError(t, err)
}

func TestEnsureRefusesForeignTop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (uid 0) to give a directory to another user")
	}
	top := filepath.Join(t.TempDir(), "state")
	t.Setenv(EnvDir, top)
	require.NoError(t, os.Mkdir(top, 0o700))
	require.NoError(t, os.Chown(top, 65534, 65534))

	_, err := Ensure()
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.ErrorContains(t, err, "owned by uid 65534")
}
