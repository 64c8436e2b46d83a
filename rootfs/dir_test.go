package rootfs_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
)

// tempDir returns a fresh temporary directory, symlink-free.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return d
}

func TestDir(t *testing.T) {
	base := tempDir(t)
	root := filepath.Join(base, "root")
	require.NoError(t, os.Mkdir(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "file"), nil, 0o644))
	require.NoError(t, os.Symlink("root", filepath.Join(base, "link")))
	require.NoError(t, os.Symlink("missing", filepath.Join(base, "dangling")))
	t.Chdir(base)

	tests := []struct {
		name    string
		path    string
		want    string // the layer, when Resolve succeeds
		errPath string // the error's path, when it fails
		is      error
	}{
		{name: "absolute", path: root, want: root},
		{name: "relative", path: "root", want: root},
		{name: "unclean", path: "./root/../root/", want: root},
		{name: "symlink", path: filepath.Join(base, "link"), want: root},
		{name: "missing", path: filepath.Join(base, "missing"), errPath: filepath.Join(base, "missing"), is: fs.ErrNotExist},
		{name: "missing relative", path: "missing", errPath: filepath.Join(base, "missing"), is: fs.ErrNotExist},
		{name: "dangling symlink", path: "dangling", errPath: filepath.Join(base, "dangling"), is: fs.ErrNotExist},
		{name: "file", path: "file", errPath: filepath.Join(base, "file"), is: syscall.ENOTDIR},
		{name: "below a file", path: "file/x", errPath: filepath.Join(base, "file/x"), is: syscall.ENOTDIR},
		{name: "empty", path: "", errPath: "", is: fs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := rootfs.Dir(tt.path).Resolve()
			if tt.is == nil {
				require.NoError(t, err)
				assert.Equal(t, &rootfs.Spec{Layers: []string{tt.want}}, spec)
				return
			}
			require.Error(t, err)
			assert.Nil(t, spec)
			assert.ErrorIs(t, err, tt.is)
			var pe *fs.PathError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "image", pe.Op)
			assert.Equal(t, tt.errPath, pe.Path)
			// The cause alone, not a nested PathError repeating the path.
			assert.NotErrorAs(t, pe.Err, new(*fs.PathError))
		})
	}
}

func TestDirErrorMessage(t *testing.T) {
	base := tempDir(t)
	_, err := rootfs.Dir(filepath.Join(base, "missing")).Resolve()
	assert.EqualError(t, err, "image "+filepath.Join(base, "missing")+": no such file or directory")
}

func TestLayers(t *testing.T) {
	base := tempDir(t)
	var dirs []string
	for _, name := range []string{"top", "middle", "bottom"} {
		d := filepath.Join(base, name)
		require.NoError(t, os.Mkdir(d, 0o755))
		dirs = append(dirs, d)
	}
	require.NoError(t, os.Symlink("middle", filepath.Join(base, "link")))

	tests := []struct {
		name  string
		paths []string
		want  []string
		is    error
	}{
		{"one", dirs[:1], dirs[:1], nil},
		{"order kept", dirs, dirs, nil},
		{"reversed", []string{dirs[2], dirs[1], dirs[0]}, []string{dirs[2], dirs[1], dirs[0]}, nil},
		{"each resolved", []string{dirs[0], filepath.Join(base, "link")}, dirs[:2], nil},
		{"none", nil, nil, fs.ErrInvalid},
		{"one missing", []string{dirs[0], filepath.Join(base, "missing"), dirs[2]}, nil, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := rootfs.Layers(tt.paths...).Resolve()
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
				assert.Nil(t, spec)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, spec.Layers)
			assert.Empty(t, spec.Binds)
		})
	}
}

func TestLayersCopiesPaths(t *testing.T) {
	base := tempDir(t)
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	require.NoError(t, os.Mkdir(a, 0o755))
	require.NoError(t, os.Mkdir(b, 0o755))
	paths := []string{a}
	img := rootfs.Layers(paths...)
	paths[0] = b
	spec, err := img.Resolve()
	require.NoError(t, err)
	assert.Equal(t, []string{a}, spec.Layers)
}

func TestString(t *testing.T) {
	tests := []struct {
		img  rootfs.Image
		want string
	}{
		{rootfs.Dir("/srv/busybox"), `rootfs.Dir("/srv/busybox")`},
		{rootfs.Dir("rel"), `rootfs.Dir("rel")`},
		{rootfs.Layers("/a", "/b"), `rootfs.Layers("/a", "/b")`},
		{rootfs.Layers(), `rootfs.Layers()`},
		{rootfs.Host(), `rootfs.Host()`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, fmt.Sprint(tt.img))
	}
}
