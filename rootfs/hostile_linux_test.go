package rootfs_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
)

// assertNothingStored checks that a failed import left no layer, blob,
// record or work directory in the store.
func assertNothingStored(t *testing.T, s *rootfs.Store) {
	t.Helper()
	for _, sub := range []string{"layers/sha256", "blobs/sha256", "images", "tmp"} {
		assert.Empty(t, entries(t, s, sub), "store's %s", sub)
	}
}

func TestHostileTarballs(t *testing.T) {
	outside := t.TempDir()
	secret := writeFile(t, filepath.Join(outside, "secret"), []byte("secret"))
	before := listTree(t, outside)

	truncated := makeTar(t, file("a", strings.Repeat("x", 4096)), file("b", strings.Repeat("y", 4096)))
	noTrailer := makeTar(t, file("a", "x"))
	noTrailer = noTrailer[:len(noTrailer)-1024]

	tests := []struct {
		name string
		tar  []byte
		want error  // errors.Is, when set
		msg  string // in the message, when set
	}{
		{name: "dotdot", tar: makeTar(t, file("../escape", "x")), want: rootfs.ErrUnsafePath},
		{name: "dotdot inside", tar: makeTar(t, dir("a"), file("a/../../escape", "x")), want: rootfs.ErrUnsafePath},
		{name: "absolute", tar: makeTar(t, file(filepath.Join(outside, "abs"), "x")), want: rootfs.ErrUnsafePath},
		{name: "through absolute symlink",
			tar: makeTar(t, entry{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/planted", "x")), want: rootfs.ErrUnsafePath},
		{name: "through relative symlink",
			tar: makeTar(t, entry{name: "evil", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside},
				file("evil/planted", "x")), want: rootfs.ErrUnsafePath},
		{name: "directory through symlink",
			tar: makeTar(t, entry{name: "evil", typ: tar.TypeSymlink, link: outside}, dir("evil/sub")), want: rootfs.ErrUnsafePath},
		{name: "symlink replacing a directory",
			tar:  makeTar(t, dir("d"), file("d/f", "x"), entry{name: "d", typ: tar.TypeSymlink, link: outside}, file("d/planted", "x")),
			want: rootfs.ErrUnsafePath},
		{name: "overwrite through symlink",
			tar: makeTar(t, entry{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/secret", "pwned")), want: rootfs.ErrUnsafePath},
		{name: "hard link to absolute", tar: makeTar(t, entry{name: "h", typ: tar.TypeLink, link: secret}), want: rootfs.ErrUnsafePath},
		{name: "hard link with dotdot", tar: makeTar(t, entry{name: "h", typ: tar.TypeLink, link: "../../../../../../" + secret}),
			want: rootfs.ErrUnsafePath},
		{name: "hard link through symlink",
			tar:  makeTar(t, entry{name: "s", typ: tar.TypeSymlink, link: outside}, entry{name: "h", typ: tar.TypeLink, link: "s/secret"}),
			want: rootfs.ErrUnsafePath},
		{name: "hard link to missing", tar: makeTar(t, entry{name: "h", typ: tar.TypeLink, link: "nothing"}), msg: "not in the layer"},
		{name: "whiteout through symlink",
			tar: makeTar(t, entry{name: "s", typ: tar.TypeSymlink, link: outside}, whiteout("s/secret")), want: rootfs.ErrUnsafePath},
		{name: "opaque through symlink",
			tar: makeTar(t, entry{name: "s", typ: tar.TypeSymlink, link: outside}, opaque("s")), want: rootfs.ErrUnsafePath},
		{name: "whiteout of dotdot", tar: makeTar(t, file(".wh..", "")), want: rootfs.ErrUnsafePath},
		{name: "truncated in a file", tar: truncated[:len(truncated)-3000], want: io.ErrUnexpectedEOF},
		{name: "truncated between entries", tar: noTrailer, want: io.ErrUnexpectedEOF},
		{name: "truncated gzip", tar: func() []byte { b := gzipped(t, truncated); return b[:len(b)/2] }(), want: io.ErrUnexpectedEOF},
		{name: "empty", tar: nil, want: io.ErrUnexpectedEOF},
		{name: "not a tar", tar: bytes.Repeat([]byte("garbage!"), 200), msg: "reading tar"},
		{name: "huge sparse file", tar: makeTar(t, entry{name: "huge", size: 1 << 40}), want: rootfs.ErrLayerTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			path := writeFile(t, filepath.Join(t.TempDir(), "evil.tar"), tc.tar)
			_, err := s.Import(ctx, "rootfs-tar:"+path, "evil")
			require.Error(t, err)
			var le *rootfs.LayerError
			assert.ErrorAs(t, err, &le)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.ErrorContains(t, err, tc.msg)
			t.Log(err)
			assert.Equal(t, before, listTree(t, outside), "nothing written outside")
			b, _ := os.ReadFile(secret)
			assert.Equal(t, "secret", string(b))
			assertNothingStored(t, s)
		})
	}
}

// TestSparseBombMadeByTar imports a 1 TiB sparse file as GNU tar writes
// one: its header declares the whole size.
func TestSparseBombMadeByTar(t *testing.T) {
	gnutar := needTool(t, "tar")
	if out, _ := exec.Command(gnutar, "--version").CombinedOutput(); !strings.Contains(string(out), "GNU tar") {
		t.Skip("needs GNU tar (apt-get install tar) to write a sparse file; this tar is not")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "huge"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(1<<40))
	f.Close()
	out := filepath.Join(t.TempDir(), "sparse.tar")
	testRun(t, gnutar, "--sparse", "-cf", out, "-C", src, "huge")
	s := openStore(t)
	_, err = s.Import(ctx, "rootfs-tar:"+out, "sparse")
	assert.ErrorIs(t, err, rootfs.ErrLayerTooLarge)
	assertNothingStored(t, s)

	// Under the limit, a sparse file stays sparse.
	require.NoError(t, os.Truncate(filepath.Join(src, "huge"), 1<<30))
	testRun(t, gnutar, "--sparse", "-cf", out, "-C", src, "huge")
	_, err = s.Import(ctx, "rootfs-tar:"+out, "sparse")
	require.NoError(t, err)
	spec, err := s.Image("sparse").Resolve()
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(spec.Layers[0], "huge"))
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), fi.Size())
	assert.Less(t, diskBytes(t, filepath.Join(spec.Layers[0], "huge")), int64(1<<20))
}

// TestDecompressionBomb imports a gzip stream of 300 MiB of zeros (about
// 300 KiB), a ratio no real layer has.
func TestDecompressionBomb(t *testing.T) {
	var buf bytes.Buffer
	member := func(b []byte) {
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
	}
	const size = 300 << 20
	var th bytes.Buffer
	tw := tar.NewWriter(&th)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}))
	member(th.Bytes()[:512])
	// gzip members concatenate into one stream: 1 MiB of zeros, again and again.
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	for range size >> 20 {
		buf.Write(one.Bytes())
	}
	member(make([]byte, 1024))
	t.Logf("bomb: %d bytes", buf.Len())

	s := openStore(t)
	path := writeFile(t, filepath.Join(t.TempDir(), "bomb.tar.gz"), buf.Bytes())
	_, err := s.Import(ctx, "rootfs-tar:"+path, "bomb")
	assert.ErrorIs(t, err, rootfs.ErrLayerTooLarge)
	assert.ErrorContains(t, err, "decompression bomb")
	assertNothingStored(t, s)

	// WithMaxLayerSize bounds a layer whatever its ratio.
	path = writeFile(t, filepath.Join(t.TempDir(), "big.tar"), makeTar(t, file("big", strings.Repeat("x", 2<<20))))
	_, err = s.Import(ctx, "rootfs-tar:"+path, "big", rootfs.WithMaxLayerSize(1<<20))
	assert.ErrorIs(t, err, rootfs.ErrLayerTooLarge)
	assertNothingStored(t, s)
}

func TestBadDigests(t *testing.T) {
	base := layeredImage(t)
	layers, err := base.Layers()
	require.NoError(t, err)
	top, err := layers[2].Digest()
	require.NoError(t, err)

	tests := []struct {
		name   string
		want   error
		tamper func(t *testing.T, dir string)
	}{
		{"layer blob replaced", rootfs.ErrDigestMismatch, func(t *testing.T, dir string) {
			writeFile(t, blob(dir, top), gzipped(t, makeTar(t, file("other", "content"))))
		}},
		{"layer blob truncated", io.ErrUnexpectedEOF, func(t *testing.T, dir string) {
			b, err := os.ReadFile(blob(dir, top))
			require.NoError(t, err)
			writeFile(t, blob(dir, top), b[:len(b)-10])
		}},
		{"diff_id wrong", rootfs.ErrDigestMismatch, func(t *testing.T, dir string) {
			editConfig(t, dir, func(cfg map[string]any) {
				ids := cfg["rootfs"].(map[string]any)["diff_ids"].([]any)
				ids[2] = "sha256:" + strings.Repeat("ab", 32)
			})
		}},
		{"manifest changed", rootfs.ErrDigestMismatch, func(t *testing.T, dir string) {
			m := manifestDigest(t, dir)
			b, err := os.ReadFile(blob(dir, m))
			require.NoError(t, err)
			writeFile(t, blob(dir, m), append(b, ' '))
		}},
		{"config changed", rootfs.ErrDigestMismatch, func(t *testing.T, dir string) {
			var m v1.Manifest
			readJSON(t, blob(dir, manifestDigest(t, dir)), &m)
			b, err := os.ReadFile(blob(dir, m.Config.Digest))
			require.NoError(t, err)
			writeFile(t, blob(dir, m.Config.Digest), append(b, ' '))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLayout(t, base, "v1")
			tc.tamper(t, dir)
			s := openStore(t)
			_, err := s.Import(ctx, "oci:"+dir, "tampered")
			assert.ErrorIs(t, err, tc.want)
			t.Log(err)
			assert.Empty(t, entries(t, s, "images"))
			assert.Empty(t, entries(t, s, "tmp"))
			// The untampered layers may be in; the bad one is not.
			spec, err := s.Image("tampered").Resolve()
			assert.Nil(t, spec)
			assert.Error(t, err)
			assert.LessOrEqual(t, len(entries(t, s, "layers/sha256")), 2)
		})
	}
}

func blob(dir string, h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func manifestDigest(t *testing.T, dir string) v1.Hash {
	t.Helper()
	var idx v1.IndexManifest
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	require.Len(t, idx.Manifests, 1)
	return idx.Manifests[0].Digest
}

// editConfig changes the configuration of the layout's one image, and
// the digests that name it, so that the layout stays consistent.
func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	var idx map[string]any
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	md := manifestDigest(t, dir)
	var m map[string]any
	readJSON(t, blob(dir, md), &m)
	cd, err := v1.NewHash(m["config"].(map[string]any)["digest"].(string))
	require.NoError(t, err)
	var cfg map[string]any
	readJSON(t, blob(dir, cd), &cfg)
	edit(cfg)
	put := func(v any) (v1.Hash, int) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		writeFile(t, blob(dir, h), b)
		return h, len(b)
	}
	h, n := put(cfg)
	m["config"].(map[string]any)["digest"], m["config"].(map[string]any)["size"] = h.String(), n
	h, n = put(m)
	d := idx["manifests"].([]any)[0].(map[string]any)
	d["digest"], d["size"] = h.String(), n
	b, err := json.Marshal(idx)
	require.NoError(t, err)
	writeFile(t, filepath.Join(dir, "index.json"), b)
}
