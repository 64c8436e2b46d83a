package rootfs_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// entry is one tar entry of a test layer.
type entry struct {
	name     string
	typ      byte // tar.TypeReg by default
	body     string
	link     string
	mode     int64
	uid, gid int
	xattrs   map[string]string
	size     int64 // overrides len(body) in the header
	major    int64
	minor    int64
}

func file(name, body string) entry { return entry{name: name, body: body} }
func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir} }
func whiteout(name string) entry {
	d, b := filepath.Split(name)
	return entry{name: d + ".wh." + b}
}
func opaque(dirName string) entry { return entry{name: dirName + "/.wh..wh..opq"} }

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// makeTar writes entries as a tar stream.
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, Size: int64(len(e.body)), Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if e.size != 0 {
			hdr.Size = e.size
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		require.NoError(t, tw.WriteHeader(hdr))
		if e.size == 0 {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		} else {
			return buf.Bytes() // a header that lies: the stream stops here
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// tarDir writes the tree under root as a tar stream, owned by root.
func tarDir(t testing.TB, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = rel, 0, 0, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

var busyboxTarCache []byte

// busyboxTar is a tar of a busybox root filesystem.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	if busyboxTarCache == nil {
		busyboxTarCache = tarDir(t, testenv.BusyboxRoot(t))
	}
	return busyboxTarCache
}

// layer makes a gzip-compressed OCI layer of a tar stream.
func layer(t testing.TB, tarBytes []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	require.NoError(t, err)
	return l
}

// image makes an OCI image of layers (bottom first) with a run config.
func image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: cfg,
		RootFS: v1.RootFS{Type: "layers"}})
	require.NoError(t, err)
	for i, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{CreatedBy: "test layer " + string(rune('0'+i%10))}})
		require.NoError(t, err)
	}
	return img
}

// writeLayout writes img as an OCI image layout tagged tag.
func writeLayout(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag})))
	return dir
}

func openStore(t testing.TB) *rootfs.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := rootfs.OpenStore(dir)
	require.NoError(t, err)
	t.Cleanup(func() {
		s.Close()
		// Without root, a layer's read-only directories stop its owner
		// from deleting what is in them.
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
	return s
}

// run runs script in a sandbox on img and returns its stdout.
func run(t testing.TB, img rootfs.Image, script string) string {
	t.Helper()
	return runCmd(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", script}})
}

func runCmd(t testing.TB, cmd *sandbox.Cmd) string {
	t.Helper()
	cmd.Limits.WallTime = 30 * time.Second
	res, err := cmd.Run(context.Background())
	testenv.SkipIfUnsupported(t, "run a sandbox", err)
	require.NoError(t, err)
	require.Equal(t, sandbox.OK, res.Status, "stdout: %s\nstderr: %s", res.Stdout, res.Stderr)
	return string(res.Stdout)
}

// listTree lists the paths under dir, for checking that nothing was left
// somewhere.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// entries lists a store subdirectory.
func entries(t testing.TB, s *rootfs.Store, sub string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(s.Dir(), sub))
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (apt-get install %s): %v", name, name, err)
	}
	return p
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

// testRun runs a tool and returns its output, failing the test if it fails.
func testRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// diskBytes is how much disk a file takes.
func diskBytes(t testing.TB, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Blocks * 512
}
