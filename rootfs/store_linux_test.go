package rootfs_test

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

var ctx = context.Background()

// layeredImage is busybox plus two layers that delete across layers and
// make an opaque directory:
//
//	1: busybox
//	2: adds /etc/hello and /data/{a,b}; deletes /etc/group
//	3: makes /data opaque with only /data/c in it; deletes /bin/vi
func layeredImage(t testing.TB) v1.Image {
	return image(t, v1.Config{Env: []string{"PATH=/bin", "GREETING=hi"}, Cmd: []string{"sh", "-c", "echo $GREETING"}, WorkingDir: "/data"},
		layer(t, busyboxTar(t)),
		layer(t, makeTar(t, file("etc/hello", "hello\n"), dir("data"), file("data/a", "a"), file("data/b", "b"),
			whiteout("etc/group"))),
		layer(t, makeTar(t, dir("data"), opaque("data"), file("data/c", "c"), whiteout("bin/vi"))),
	)
}

// checkLayered runs the checks of layeredImage's content in a sandbox.
func checkLayered(t *testing.T, img rootfs.Image) {
	t.Helper()
	out := run(t, img, "cat /etc/hello; ls /data; test -e /etc/group || echo no group; test -e /bin/vi || echo no vi; pwd; echo $GREETING")
	assert.Equal(t, "hello\nc\nno group\nno vi\n/data\nhi\n", out)
	// The image's own command.
	out = runCmd(t, &sandbox.Cmd{Image: img})
	assert.Equal(t, "hi\n", out)
}

func TestImportOCILayout(t *testing.T) {
	s := openStore(t)
	dir := writeLayout(t, layeredImage(t), "v1")
	info, err := s.Import(ctx, "oci:"+dir+":v1", "layered")
	require.NoError(t, err)
	assert.Equal(t, "layered:latest", info.Name)
	assert.Len(t, info.Layers, 3)
	assert.Equal(t, "linux/amd64", info.Platform)
	assert.Equal(t, []string{"PATH=/bin", "GREETING=hi"}, info.Config.Env)

	// Without a tag: the layout holds one image.
	_, err = s.Import(ctx, "oci:"+dir, "layered:2")
	require.NoError(t, err)
	imgs, err := s.Images()
	require.NoError(t, err)
	require.Len(t, imgs, 2)
	assert.Equal(t, imgs[0].Digest, imgs[1].Digest)
	assert.Len(t, entries(t, s, "layers/sha256"), 3, "layers are shared")

	spec, err := s.Image("layered").Resolve()
	require.NoError(t, err)
	require.Len(t, spec.Layers, 3)
	assert.Equal(t, filepath.Join(s.Dir(), "layers/sha256", strings.TrimPrefix(info.Layers[2].DiffID, "sha256:")), spec.Layers[0], "top first")
	// Whiteouts in overlayfs form.
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(spec.Layers[1], "etc/group"), &st))
	assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT)
	assert.Zero(t, st.Rdev)
	v := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(spec.Layers[0], "data"), opaqueXattr(), v)
	require.NoError(t, err)
	assert.Equal(t, "y", string(v[:n]))

	checkLayered(t, s.Image("layered:2"))

	_, err = s.Import(ctx, "oci:"+dir+":nope", "x")
	assert.ErrorContains(t, err, `no image tagged "nope"`)
	_, err = s.Image("missing").Resolve()
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Empty(t, entries(t, s, "tmp"))
}

func opaqueXattr() string {
	if os.Geteuid() == 0 {
		return "trusted.overlay.opaque"
	}
	return "user.overlay.opaque"
}

func TestImportDockerArchive(t *testing.T) {
	s := openStore(t)
	img := layeredImage(t)
	path := filepath.Join(t.TempDir(), "image.tar")
	ref := mustTag(t, "example.com/layered:v2")
	require.NoError(t, tarball.WriteToFile(path, ref, img))
	info, err := s.Import(ctx, "docker-archive:"+path, "from-docker:v2")
	require.NoError(t, err)
	assert.Equal(t, "from-docker:v2", info.Name)
	checkLayered(t, s.Image("from-docker:v2"))
}

func mustTag(t testing.TB, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	require.NoError(t, err)
	return tag
}

func TestImportRootfsTar(t *testing.T) {
	s := openStore(t)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"plain", busyboxTar(t)},
		{"gzip", gzipped(t, busyboxTar(t))},
		{"zstd", zstded(t, busyboxTar(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(t.TempDir(), "rootfs.tar"), tc.data)
			info, err := s.Import(ctx, "rootfs-tar:"+path, "bb:"+tc.name)
			require.NoError(t, err)
			assert.Len(t, info.Layers, 1)
			assert.Equal(t, "hutch\n", run(t, s.Image("bb:"+tc.name), "hostname"))
		})
	}
	assert.Len(t, entries(t, s, "layers/sha256"), 1, "one layer, whatever its compression")
}

func zstded(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return zw.EncodeAll(b, nil)
}

// TestImportIndexInLayout imports from a layout whose tag names an index
// of several platforms, as skopeo copy --all or docker buildx write them.
func TestImportIndexInLayout(t *testing.T) {
	other := image(t, v1.Config{}, layer(t, busyboxTar(t)), layer(t, makeTar(t, file("arch", "other\n"))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "riscv64"}}},
		mutate.IndexAddendum{Add: layeredImage(t), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "multi"})))
	s := openStore(t)
	_, err = s.Import(ctx, "oci:"+dir+":multi", "multi")
	require.NoError(t, err)
	checkLayered(t, s.Image("multi"))
	_, err = s.Import(ctx, "oci:"+dir+":multi", "other", rootfs.WithPlatform("linux/riscv64"))
	require.NoError(t, err)
	assert.Equal(t, "other\n", run(t, s.Image("other"), "cat /arch"))
}

func TestImportErrors(t *testing.T) {
	s := openStore(t)
	for _, tc := range []struct {
		src, name, want string
	}{
		{"nope:/x", "a", "unknown transport"},
		{"oci:", "a", "want oci:PATH"},
		{"oci:/does/not/exist", "a", "no such file"},
		{"oci:" + t.TempDir(), "a", "not an OCI image layout"},
		{"docker-archive:/does/not/exist", "a", "no such file"},
		{"rootfs-tar:/does/not/exist", "a", "no such file"},
		{"rootfs-tar:/etc/hostname", "Bad:Name", "image name"},
	} {
		_, err := s.Import(ctx, tc.src, tc.name)
		assert.ErrorContains(t, err, tc.want, tc.src)
	}
	_, err := s.Import(ctx, "oci:/x", "a", rootfs.WithComment("no"))
	assert.ErrorIs(t, err, fs.ErrInvalid)
	assert.ErrorContains(t, err, "Import: WithComment does not apply")
	_, err = s.Import(ctx, "oci:/x", "a", rootfs.WithPlatform("linux"))
	assert.ErrorIs(t, err, fs.ErrInvalid)
}

func TestLayerMetadata(t *testing.T) {
	s := openStore(t)
	tarBytes := makeTar(t,
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o555, uid: 0, gid: 0},
		entry{name: "bin/tool", body: "#!/bin/sh\n", mode: 0o4755, uid: 1000, gid: 1001,
			xattrs: map[string]string{"user.note": "kept", "trusted.overlay.redirect": "/etc", "user.overlay.opaque": "y"}},
		entry{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool"},
		entry{name: "bin/soft", typ: tar.TypeSymlink, link: "/no/where"},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		entry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		entry{name: "ro/", typ: tar.TypeDir, mode: 0o500},
		entry{name: "ro/f", body: "x", mode: 0o400},
		file("sparse", strings.Repeat("\x00", 1<<20)+"end"),
	)
	path := writeFile(t, filepath.Join(t.TempDir(), "meta.tar"), tarBytes)
	_, err := s.Import(ctx, "rootfs-tar:"+path, "meta")
	require.NoError(t, err)
	spec, err := s.Image("meta").Resolve()
	require.NoError(t, err)
	root := spec.Layers[0]
	asRoot := os.Geteuid() == 0

	var tool, hard unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin/tool"), &tool))
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin/hard"), &hard))
	assert.Equal(t, tool.Ino, hard.Ino, "hard link")
	if asRoot {
		assert.Equal(t, uint32(0o4755), tool.Mode&0o7777, "setuid kept after chown")
		assert.Equal(t, [2]uint32{1000, 1001}, [2]uint32{tool.Uid, tool.Gid})
	} else {
		assert.Equal(t, uint32(os.Geteuid()), tool.Uid, "without root, files are the caller's")
	}
	assert.Equal(t, epoch.Unix(), tool.Mtim.Sec)
	v := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(root, "bin/tool"), "user.note", v)
	if err != unix.ENOTSUP {
		require.NoError(t, err)
		assert.Equal(t, "kept", string(v[:n]))
	}
	_, err = unix.Lgetxattr(filepath.Join(root, "bin/tool"), "trusted.overlay.redirect", v)
	assert.Error(t, err, "overlay xattrs never come from a tar")
	_, err = unix.Lgetxattr(filepath.Join(root, "bin/tool"), "user.overlay.opaque", v)
	assert.Error(t, err, "overlay xattrs never come from a tar")

	link, err := os.Readlink(filepath.Join(root, "bin/soft"))
	require.NoError(t, err)
	assert.Equal(t, "/no/where", link)
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(root, "run/fifo"), &st))
	assert.Equal(t, uint32(unix.S_IFIFO), st.Mode&unix.S_IFMT)
	err = unix.Lstat(filepath.Join(root, "dev/null"), &st)
	if asRoot {
		require.NoError(t, err)
		assert.Equal(t, uint64(unix.Mkdev(1, 3)), st.Rdev)
	}
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin"), &st))
	assert.Equal(t, uint32(0o555), st.Mode&0o7777, "directory modes are set last")
	assert.Equal(t, epoch.Unix(), st.Mtim.Sec, "directory times are set last")
	require.NoError(t, unix.Lstat(filepath.Join(root, "sparse"), &st))
	assert.Equal(t, int64(1<<20+3), st.Size)
	assert.Less(t, st.Blocks*512, int64(1<<20), "zero blocks are holes")
}

func TestStoreDirChecks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(dir, 0o777))
	require.NoError(t, os.Chmod(dir, 0o777))
	_, err := rootfs.OpenStore(dir)
	assert.ErrorIs(t, err, fs.ErrPermission)
	f := writeFile(t, filepath.Join(t.TempDir(), "file"), nil)
	_, err = rootfs.OpenStore(f)
	assert.True(t, errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist), "%v", err)
}
