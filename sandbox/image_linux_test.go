package sandbox_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// configImage is a directory image that carries a run configuration, as an
// image from a store does.
type configImage struct {
	rootfs.Image
	config rootfs.Config
}

func (i configImage) Resolve() (*rootfs.Spec, error) {
	spec, err := i.Image.Resolve()
	if err != nil {
		return nil, err
	}
	spec.Config = &i.config
	return spec, nil
}

func TestImageConfig(t *testing.T) {
	base, root := busybox(t)
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/passwd"),
		[]byte("root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644))
	img := configImage{Image: base, config: rootfs.Config{
		Env:        []string{"GREETING=hello", "WHO=image"},
		Entrypoint: []string{"sh", "-c"},
		Cmd:        []string{"echo $GREETING $WHO from $(pwd) as $(id -u):$(id -g)"},
		WorkingDir: "/etc",
		User:       "app",
	}}
	if os.Geteuid() != 0 {
		// Only 0:0 is mapped: an image's other user is refused.
		_, err := (&sandbox.Cmd{Image: img}).Run(context.Background())
		require.ErrorIs(t, err, fs.ErrInvalid)
		img.config.User = ""
		res := run(t, &sandbox.Cmd{Image: img})
		assert.Equal(t, "hello image from /etc as 0:0\n", string(res.Stdout), "stderr: %s", res.Stderr)
		return
	}
	res := run(t, &sandbox.Cmd{Image: img})
	assert.Equal(t, "hello image from /etc as 1234:4321\n", string(res.Stdout), "stderr: %s", res.Stderr)

	// The caller's settings win.
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo $GREETING $WHO from $(pwd) as $(id -u):$(id -g)"},
		Env: []string{"WHO=caller"}, Dir: "/tmp", Credential: &sandbox.Credential{UID: 7, GID: 8}})
	assert.Equal(t, "hello caller from /tmp as 7:8\n", string(res.Stdout), "stderr: %s", res.Stderr)

	img.config.User = "app:staff"
	res = run(t, &sandbox.Cmd{Image: img})
	assert.Contains(t, string(res.Stdout), "as 1234:50")
}

func TestWritableLayerKept(t *testing.T) {
	img, _ := busybox(t)
	layer := filepath.Join(t.TempDir(), "layer")
	res := run(t, &sandbox.Cmd{Image: img, Credential: &sandbox.Credential{}, WritableLayer: layer,
		Args: []string{"sh", "-c", "mkdir /data && echo kept > /data/f && rm /etc/group && echo gone > /tmp/t"}})
	require.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
	b, err := os.ReadFile(filepath.Join(layer, "upper/data/f"))
	require.NoError(t, err)
	assert.Equal(t, "kept\n", string(b))
	var st syscall.Stat_t
	require.NoError(t, syscall.Lstat(filepath.Join(layer, "upper/etc/group"), &st))
	assert.Equal(t, uint32(syscall.S_IFCHR), st.Mode&syscall.S_IFMT, "a deletion is an overlay whiteout")
	assert.NoDirExists(t, filepath.Join(layer, "work"))
	assert.NoFileExists(t, filepath.Join(layer, "upper/tmp/t"), "/tmp is not part of the layer")
}

// A run that fails before its command runs leaves its writable layer as
// it found it, empty, for a run after it; one given a layer that is not
// empty refuses it and leaves what is there alone.
func TestWritableLayerUntouchedBySetupFailure(t *testing.T) {
	img, _ := busybox(t)
	layer := filepath.Join(t.TempDir(), "layer")
	require.NoError(t, os.Mkdir(layer, 0o755))
	_, err := (&sandbox.Cmd{Image: img, WritableLayer: layer, Args: []string{"/no/such/command"}}).Run(context.Background())
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "execve", se.Stage)
	entries, err := os.ReadDir(layer)
	require.NoError(t, err)
	assert.Empty(t, entries)
	res := run(t, &sandbox.Cmd{Image: img, WritableLayer: layer, Args: []string{"true"}})
	assert.Equal(t, sandbox.OK, res.Status)

	mine := filepath.Join(t.TempDir(), "mine")
	require.NoError(t, os.MkdirAll(filepath.Join(mine, "work"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mine, "work", "f"), []byte("x"), 0o644))
	_, err = (&sandbox.Cmd{Image: img, WritableLayer: mine, Args: []string{"true"}}).Run(context.Background())
	assert.ErrorIs(t, err, fs.ErrInvalid)
	assert.FileExists(t, filepath.Join(mine, "work", "f"))
}

func TestManyLayers(t *testing.T) {
	img, root := busybox(t)
	base, err := img.Resolve()
	require.NoError(t, err)
	var layers []string
	for i := range 128 {
		// Long paths, as a content-addressed store makes them.
		d := filepath.Join(t.TempDir(), strings.Repeat("x", 60), fmt.Sprintf("layer-%03d", i))
		require.NoError(t, os.MkdirAll(filepath.Join(d, "layers"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, "layers", fmt.Sprint(i)), nil, 0o644))
		layers = append(layers, d)
	}
	_ = root
	many := rootfs.Layers(append(layers, base.Layers...)...)
	res := run(t, &sandbox.Cmd{Image: many, Args: []string{"sh", "-c", "ls /layers | wc -l"}})
	assert.Equal(t, "128\n", string(res.Stdout), "stderr: %s", res.Stderr)
}
