package rootfs

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStoreDirFor(t *testing.T) {
	cwd, err := os.Getwd()
	require.NoError(t, err)
	tests := []struct {
		name string
		env  map[string]string
		euid int
		goos string
		want string
	}{
		{"env wins", map[string]string{EnvStoreDir: "/srv/images", "XDG_DATA_HOME": "/x"}, 0, "linux", "/srv/images"},
		{"env made absolute", map[string]string{EnvStoreDir: "rel"}, 1000, "linux", filepath.Join(cwd, "rel")},
		{"root", map[string]string{"HOME": "/root"}, 0, "linux", "/var/lib/hutch"},
		{"xdg", map[string]string{"XDG_DATA_HOME": "/home/u/data", "HOME": "/home/u"}, 1000, "linux", "/home/u/data/hutch"},
		{"relative xdg ignored", map[string]string{"XDG_DATA_HOME": "data", "HOME": "/home/u"}, 1000, "linux", "/home/u/.local/share/hutch"},
		{"home", map[string]string{"HOME": "/home/u"}, 1000, "linux", "/home/u/.local/share/hutch"},
		{"root elsewhere is a user", map[string]string{"HOME": "/var/root"}, 0, "darwin", "/var/root/.local/share/hutch"},
		{"nothing", nil, 1000, "linux", filepath.Join(os.TempDir(), "hutch-store-1000")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, storeDirFor(func(k string) string { return tc.env[k] }, tc.euid, tc.goos))
		})
	}
}

func TestNormalizeName(t *testing.T) {
	digest := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"library/busybox", "library/busybox:latest"},
		{"localhost:5000/team/app", "localhost:5000/team/app:latest"},
		{"localhost:5000/team/app:v2", "localhost:5000/team/app:v2"},
		{"ghcr.io/a/b@" + digest, "ghcr.io/a/b@" + digest},
		{"Busybox", ""},
		{"", ""},
		{"a:b:c", ""},
		{"a@sha256:nothex", ""},
		{"a:" + string(make([]byte, 200)), ""},
	}
	for _, tc := range tests {
		got, err := normalizeName(tc.in)
		if tc.want == "" {
			assert.ErrorIs(t, err, fs.ErrInvalid, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got)
	}
}

func TestSplitSource(t *testing.T) {
	dir := t.TempDir()
	colon := filepath.Join(dir, "a:b")
	require.NoError(t, os.Mkdir(colon, 0o755))
	tests := []struct{ in, path, suffix string }{
		{dir, dir, ""},
		{dir + ":v1", dir, "v1"},
		{colon, colon, ""},
		{colon + ":v1", colon, "v1"},
		{dir + ":repo:tag", dir, "repo:tag"},
		{"/nowhere:v1", "/nowhere:v1", ""},
	}
	for _, tc := range tests {
		path, suffix := splitSource(tc.in)
		assert.Equal(t, [2]string{tc.path, tc.suffix}, [2]string{path, suffix}, tc.in)
	}
}
