package state

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirFor(t *testing.T) {
	cwd, err := os.Getwd()
	require.NoError(t, err)
	tmp := os.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		euid int
		goos string
		want string
	}{
		{"override", map[string]string{EnvDir: "/srv/hutch", "XDG_RUNTIME_DIR": "/run/user/1000"}, 0, "linux", "/srv/hutch"},
		{"override made absolute", map[string]string{EnvDir: "state"}, 1000, "linux", filepath.Join(cwd, "state")},
		{"override cleaned", map[string]string{EnvDir: "/srv//hutch/"}, 1000, "linux", "/srv/hutch"},
		{"root", map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"}, 0, "linux", "/run/hutch"},
		{"root elsewhere", nil, 0, "darwin", filepath.Join(tmp, "hutch-0")},
		{"user", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "linux", "/run/user/1000/hutch"},
		{"relative runtime dir ignored", map[string]string{"XDG_RUNTIME_DIR": "run"}, 1000, "linux", filepath.Join(tmp, "hutch-1000")},
		{"user without runtime dir", nil, 1000, "linux", filepath.Join(tmp, "hutch-1000")},
		{"no uid", nil, -1, "windows", filepath.Join(tmp, "hutch")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			assert.Equal(t, tt.want, dirFor(getenv, tt.euid, tt.goos))
		})
	}
}

func TestDirEnv(t *testing.T) {
	d := t.TempDir()
	t.Setenv(EnvDir, d)
	assert.Equal(t, d, Dir())

	t.Setenv(EnvDir, "")
	assert.NotEqual(t, d, Dir(), "an empty %s is unset", EnvDir)
	assert.True(t, filepath.IsAbs(Dir()))
}

func TestEnsure(t *testing.T) {
	top := filepath.Join(t.TempDir(), "parent", "state")
	t.Setenv(EnvDir, top)

	got, err := Ensure()
	require.NoError(t, err)
	assert.Equal(t, top, got)

	got, err = Ensure("images", "host")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(top, "images", "host"), got)

	if runtime.GOOS != "windows" {
		for dir, want := range map[string]fs.FileMode{
			top:                               0o700,
			filepath.Join(top, "images"):      0o755,
			filepath.Join(top, "images/host"): 0o755,
		} {
			fi, err := os.Stat(dir)
			require.NoError(t, err)
			assert.Equal(t, want, fi.Mode().Perm(), dir)
		}
	}

	// Again: existing directories are fine, and left as they are.
	require.NoError(t, os.Chmod(filepath.Join(top, "images"), 0o711))
	got2, err := Ensure("images/host")
	require.NoError(t, err)
	assert.Equal(t, got, got2)
	fi, err := os.Stat(filepath.Join(top, "images"))
	require.NoError(t, err)
	if runtime.GOOS != "windows" {
		assert.Equal(t, fs.FileMode(0o711), fi.Mode().Perm())
	}
}

// A directory Ensure made and something then removed is made again.
func TestEnsureAfterRemoval(t *testing.T) {
	top := filepath.Join(t.TempDir(), "state")
	t.Setenv(EnvDir, top)
	dir, err := Ensure("locks")
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(top))
	again, err := Ensure("locks")
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	assert.DirExists(t, again)
	// A file in its place is refused, not taken for the directory.
	require.NoError(t, os.Remove(again))
	require.NoError(t, os.WriteFile(again, nil, 0o600))
	_, err = Ensure("locks")
	assert.Error(t, err)
}

func TestEnsureErrors(t *testing.T) {
	top := t.TempDir()
	t.Setenv(EnvDir, top)
	require.NoError(t, os.WriteFile(filepath.Join(top, "file"), nil, 0o644))

	tests := []struct {
		name string
		sub  []string
		is   error
	}{
		{"parent", []string{".."}, fs.ErrInvalid},
		{"escape", []string{"a", "../../b"}, fs.ErrInvalid},
		{"absolute", []string{"/etc"}, fs.ErrInvalid},
		{"file in the way", []string{"file"}, nil},
		{"below a file", []string{"file", "x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Ensure(tt.sub...)
			require.Error(t, err)
			var pe *fs.PathError
			assert.ErrorAs(t, err, &pe)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
		})
	}
}
