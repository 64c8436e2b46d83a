package rootfs_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// TestRunCommitRunExport: run on an image, commit what the run changed,
// run the commit, export it and read it back with skopeo and umoci.
func TestRunCommitRunExport(t *testing.T) {
	s := openStore(t)
	_, err := s.ImportImage(ctx, "base", layeredImage(t))
	require.NoError(t, err)
	wl, remove, err := s.NewWritableLayer()
	require.NoError(t, err)
	defer remove()
	runCmd(t, &sandbox.Cmd{Image: s.Image("base"), WritableLayer: wl, Credential: &sandbox.Credential{},
		Args: []string{"sh", "-c", `set -e
			echo new > /etc/new
			rm /etc/hello
			echo changed >> /etc/passwd
			rm -r /data && mkdir /data && echo d > /data/d
			mkdir -p /opt/x && ln -s /etc/new /opt/x/link
			echo scratch > /tmp/not-kept`}})

	changes, err := rootfs.Diff(s.Image("base"), wl)
	require.NoError(t, err)
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	assert.Equal(t, []string{
		"C /data", "D /data/c", "A /data/d",
		"C /etc", "D /etc/hello", "A /etc/new", "C /etc/passwd",
		"A /opt", "A /opt/x", "A /opt/x/link",
	}, got)

	info, err := s.Commit(ctx, "base", wl, "committed:v1", rootfs.WithComment("from a test"), rootfs.WithAuthor("hutch"))
	require.NoError(t, err)
	assert.Len(t, info.Layers, 4)
	assert.Equal(t, "commit of base:latest", info.Source)
	assert.Equal(t, []string{"PATH=/bin", "GREETING=hi"}, info.Config.Env, "configuration inherited")
	require.NoError(t, remove())

	img := s.Image("committed:v1")
	out := run(t, img, `cat /etc/new; test -e /etc/hello || echo no hello; ls /data; tail -n 1 /etc/passwd
		readlink /opt/x/link; test -e /etc/group || echo still no group; test -e /tmp/not-kept || echo tmp not kept`)
	assert.Equal(t, "new\nno hello\nd\nchanged\n/etc/new\nstill no group\ntmp not kept\n", out)
	assert.Equal(t, "hi\n", runCmd(t, &sandbox.Cmd{Image: img}), "the base's command")

	var cfg v1.ConfigFile
	readJSON(t, filepath.Join(s.Dir(), "blobs", strings.Replace(info.ID, ":", "/", 1)), &cfg)
	h := cfg.History[len(cfg.History)-1]
	assert.Equal(t, "from a test", h.Comment)
	assert.Equal(t, "hutch", h.Author)
	assert.Len(t, cfg.RootFS.DiffIDs, 4)

	// Export, and read it back with other tools.
	export := filepath.Join(t.TempDir(), "export")
	require.NoError(t, s.Export(ctx, "committed:v1", export))
	t.Run("skopeo", func(t *testing.T) {
		skopeo := needTool(t, "skopeo")
		var inspect struct {
			Digest string
			Layers []string
			Env    []string
		}
		require.NoError(t, json.Unmarshal([]byte(testRun(t, skopeo, "inspect", "oci:"+export+":v1")), &inspect))
		assert.Equal(t, info.Digest, inspect.Digest, "an OCI image keeps its digest")
		assert.Len(t, inspect.Layers, 4)
		assert.Equal(t, []string{"PATH=/bin", "GREETING=hi"}, inspect.Env)
		// And skopeo can copy it somewhere else, checking every blob.
		testRun(t, skopeo, "copy", "oci:"+export+":v1", "oci:"+filepath.Join(t.TempDir(), "copy")+":v1")
	})
	t.Run("umoci", func(t *testing.T) {
		umoci := needTool(t, "umoci")
		bundle := filepath.Join(t.TempDir(), "bundle")
		args := []string{"unpack", "--image", export + ":v1", bundle}
		if os.Geteuid() != 0 {
			args = append([]string{"--rootless"}, args...)
			args = []string{args[1], args[0], args[2], args[3], args[4]}
		}
		testRun(t, umoci, args...)
		root := filepath.Join(bundle, "rootfs")
		b, err := os.ReadFile(filepath.Join(root, "etc/new"))
		require.NoError(t, err)
		assert.Equal(t, "new\n", string(b))
		assert.NoFileExists(t, filepath.Join(root, "etc/hello"))
		assert.NoFileExists(t, filepath.Join(root, "etc/group"))
		data, err := os.ReadDir(filepath.Join(root, "data"))
		require.NoError(t, err)
		require.Len(t, data, 1)
		assert.Equal(t, "d", data[0].Name())
	})

	// Export to the same layout again under another tag: both are there.
	require.NoError(t, s.Export(ctx, "base", export, rootfs.WithTag("base")))
	var idx v1.IndexManifest
	readJSON(t, filepath.Join(export, "index.json"), &idx)
	assert.Len(t, idx.Manifests, 2)
	notLayout := t.TempDir()
	writeFile(t, filepath.Join(notLayout, "file"), nil)
	assert.ErrorContains(t, s.Export(ctx, "base", notLayout), "not empty and not an OCI image layout")
}

// TestImportMadeByUmoci imports an image umoci built, with files deleted
// across layers, and one skopeo turned into a docker-save tarball.
func TestImportMadeByUmoci(t *testing.T) {
	testenv.RequireRoot(t) // umoci repack records owners only as root
	umoci := needTool(t, "umoci")
	work := t.TempDir()
	lay, bundle := filepath.Join(work, "layout"), filepath.Join(work, "bundle")
	testRun(t, umoci, "init", "--layout", lay)
	testRun(t, umoci, "new", "--image", lay+":base")
	testRun(t, umoci, "unpack", "--image", lay+":base", bundle)
	rfs := filepath.Join(bundle, "rootfs")
	testRun(t, "cp", "-a", testenv.BusyboxRoot(t)+"/.", rfs)
	writeFile(t, filepath.Join(rfs, "etc/hello"), []byte("hello\n"))
	writeFile(t, filepath.Join(rfs, "data/a"), []byte("a"))
	writeFile(t, filepath.Join(rfs, "data/b"), []byte("b"))
	testRun(t, umoci, "repack", "--refresh-bundle", "--image", lay+":v1", bundle)
	require.NoError(t, os.Remove(filepath.Join(rfs, "etc/group")))
	require.NoError(t, os.Remove(filepath.Join(rfs, "data/a")))
	require.NoError(t, os.Remove(filepath.Join(rfs, "bin/vi")))
	writeFile(t, filepath.Join(rfs, "data/c"), []byte("c"))
	testRun(t, umoci, "repack", "--image", lay+":v2", bundle)
	testRun(t, umoci, "config", "--image", lay+":v2", "--config.env", "GREETING=from umoci",
		"--config.workingdir", "/data", "--config.cmd", "sh", "--config.cmd", "-c", "--config.cmd", "echo $GREETING")

	s := openStore(t)
	info, err := s.Import(ctx, "oci:"+lay+":v2", "umoci")
	require.NoError(t, err)
	assert.Len(t, info.Layers, 2)
	check := func(img rootfs.Image) {
		t.Helper()
		out := run(t, img, "cat /etc/hello; ls /data; test -e /etc/group || echo no group; test -e /bin/vi || echo no vi; pwd")
		assert.Equal(t, "hello\nb\nc\nno group\nno vi\n/data\n", out)
		assert.Equal(t, "from umoci\n", runCmd(t, &sandbox.Cmd{Image: img}))
	}
	check(s.Image("umoci"))
	_, err = s.Import(ctx, "oci:"+lay, "x")
	assert.ErrorContains(t, err, "name one as oci:PATH:TAG")

	skopeo := needTool(t, "skopeo")
	archive := filepath.Join(work, "docker.tar")
	testRun(t, skopeo, "copy", "oci:"+lay+":v2", "docker-archive:"+archive+":umoci/test:v2")
	_, err = s.Import(ctx, "docker-archive:"+archive, "from-skopeo")
	require.NoError(t, err)
	check(s.Image("from-skopeo"))
}

// TestManyLayers runs an image of 129 layers: more than one overlay mount
// option string holds with the store's long paths.
func TestManyLayers(t *testing.T) {
	layers := []v1.Layer{layer(t, busyboxTar(t))}
	for i := range 128 {
		layers = append(layers, layer(t, makeTar(t, file(fmt.Sprintf("layers/%03d", i), fmt.Sprint(i)),
			file("layers/top", fmt.Sprint(i)))))
	}
	s := openStore(t)
	info, err := s.ImportImage(ctx, "many", image(t, v1.Config{}, layers...))
	require.NoError(t, err)
	require.Len(t, info.Layers, 129)
	assert.Equal(t, "128\n127", run(t, s.Image("many"), "ls /layers | grep -v top | wc -l; cat /layers/top"))
}

func TestRemoveAndGC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := rootfs.OpenStore(dir)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.ImportImage(ctx, "a", layeredImage(t))
	require.NoError(t, err)
	_, err = s.ImportImage(ctx, "b", image(t, v1.Config{}, layer(t, busyboxTar(t)), layer(t, makeTar(t, file("b", "b")))))
	require.NoError(t, err)
	require.Len(t, entries(t, s, "layers/sha256"), 4, "busybox is shared")

	res, err := s.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, rootfs.GCResult{}, *res, "nothing to collect")

	require.NoError(t, s.Remove("a"))
	assert.ErrorIs(t, s.Remove("a"), fs.ErrNotExist)
	res, err = s.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Layers, "a's own layers")
	assert.Equal(t, 4, res.Blobs, "a's two layers, configuration and manifest")
	assert.Positive(t, res.Bytes)
	assert.Len(t, entries(t, s, "layers/sha256"), 2)
	run(t, s.Image("b"), "cat /b")

	// Resolved by a live Store (another user of the store, or this one),
	// a layer is in use: GC keeps it until that Store closes.
	other, err := rootfs.OpenStore(dir)
	require.NoError(t, err)
	_, err = other.Image("b").Resolve()
	require.NoError(t, err)
	require.NoError(t, s.Remove("b"))
	res, err = s.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, res.Layers)
	assert.Equal(t, 2, res.InUse)
	assert.Len(t, entries(t, s, "layers/sha256"), 2)
	require.NoError(t, other.Close())
	// s resolved b too (run above): close it and collect with a fresh one.
	require.NoError(t, s.Close())
	s, err = rootfs.OpenStore(dir)
	require.NoError(t, err)
	res, err = s.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Layers)
	assertNothingStored(t, s)
	assert.Empty(t, entries(t, s, "locks"))
}
