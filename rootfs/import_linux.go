package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// annotationRefName names an image in an OCI layout's index.
const annotationRefName = "org.opencontainers.image.ref.name"

// parallelLayers is how many layers an import fetches and unpacks at once.
const parallelLayers = 3

// Import stores the image src under name ("repository[:tag]", tag latest
// by default) and returns its record. src is one of
//
//	oci:PATH[:TAG]         an OCI image layout directory; TAG picks the image
//	                       by its org.opencontainers.image.ref.name annotation
//	                       and may be left out when the layout holds one image
//	docker-archive:PATH    a tarball written by docker save (or skopeo, or
//	                       go-containerregistry's tarball.Write)
//	rootfs-tar:PATH        a tarball of a root filesystem (plain, gzip or
//	                       zstd), stored as a one-layer image with an empty
//	                       configuration
//
// An index of several platforms yields the one [WithPlatform] picks. Layers
// already in the store are not unpacked again. A layer whose content does
// not match its digests, or that is malformed, hostile or too large, is a
// [*LayerError] and leaves nothing behind; the image is stored only once
// all its layers are.
func (s *Store) Import(ctx context.Context, src, name string, opts ...Option) (*ImageInfo, error) {
	o, err := makeOptions("Import", opts)
	if err != nil {
		return nil, err
	}
	transport, rest, _ := strings.Cut(src, ":")
	if rest == "" {
		return nil, fmt.Errorf("rootfs: import %q: %w: want oci:PATH[:TAG], docker-archive:PATH or rootfs-tar:PATH", src, fs.ErrInvalid)
	}
	var img v1.Image
	switch transport {
	case "oci":
		path, tag := splitSource(rest)
		img, err = ociImage(path, tag, o)
	case "docker-archive":
		path, ref := splitSource(rest)
		img, err = dockerArchiveImage(path, ref)
	case "rootfs-tar":
		o.source = src
		return s.importRootfsTar(ctx, rest, name, o)
	default:
		return nil, fmt.Errorf("rootfs: import %q: %w: unknown transport %q (want oci:, docker-archive: or rootfs-tar:)",
			src, fs.ErrInvalid, transport)
	}
	if err != nil {
		return nil, fmt.Errorf("rootfs: import %s: %w", src, err)
	}
	o.source = src
	return s.add(ctx, name, img, o)
}

// ImportImage stores img, an image from any go-containerregistry source,
// under name. See [Store.Import].
func (s *Store) ImportImage(ctx context.Context, name string, img v1.Image, opts ...Option) (*ImageInfo, error) {
	o, err := makeOptions("ImportImage", opts)
	if err != nil {
		return nil, err
	}
	return s.add(ctx, name, img, o)
}

// Pull downloads the image ref ("[REGISTRY/]REPOSITORY[:TAG]" or
// "...@sha256:HEX"; Docker Hub when no registry is named) and stores it
// under ref. Credentials come from the Docker configuration unless
// [WithKeychain] says otherwise. From an index of several platforms it
// picks the one [WithPlatform] names, linux and this machine's architecture
// by default.
func (s *Store) Pull(ctx context.Context, ref string, opts ...Option) (*ImageInfo, error) {
	o, err := makeOptions("Pull", opts)
	if err != nil {
		return nil, err
	}
	key, err := normalizeName(ref)
	if err != nil {
		return nil, err
	}
	nopts := []name.Option{name.WeakValidation}
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(key, nopts...)
	if err != nil {
		return nil, fmt.Errorf("rootfs: pull %s: %w", ref, err)
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(o.keychain),
		remote.WithPlatform(o.wantPlatform()))
	if err != nil {
		return nil, fmt.Errorf("rootfs: pull %s: %w", ref, err)
	}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err == nil {
			img, err = pickPlatform(idx, o)
		}
		if err != nil {
			return nil, fmt.Errorf("rootfs: pull %s: %w", ref, err)
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return nil, fmt.Errorf("rootfs: pull %s: %w", ref, err)
		}
	case desc.MediaType.IsSchema1():
		return nil, fmt.Errorf("rootfs: pull %s: Docker schema 1 manifests are not supported", ref)
	default:
		return nil, fmt.Errorf("rootfs: pull %s: unsupported media type %q", ref, desc.MediaType)
	}
	o.source = r.Name()
	return s.add(ctx, key, img, o)
}

// ociImage picks an image from an OCI image layout.
func ociImage(path, tag string, o *options) (v1.Image, error) {
	if _, err := os.Stat(filepath.Join(path, "index.json")); err != nil {
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("not an OCI image layout (no index.json)")
	}
	idx, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, d := range im.Manifests {
		if t := d.Annotations[annotationRefName]; t != "" {
			tags = append(tags, t)
		}
	}
	descs := im.Manifests
	if tag != "" {
		descs = nil
		for _, d := range im.Manifests {
			if t := d.Annotations[annotationRefName]; t == tag || strings.HasSuffix(t, ":"+tag) {
				descs = append(descs, d)
			}
		}
		if len(descs) == 0 {
			return nil, fmt.Errorf("no image tagged %q in the layout (tags: %s)", tag, strings.Join(tags, ", "))
		}
	}
	switch {
	case len(descs) == 0:
		return nil, fmt.Errorf("the layout holds no image")
	case len(descs) > 1:
		// Several images: one per platform, or several tags.
		for _, d := range descs {
			if d.Platform == nil {
				return nil, fmt.Errorf("the layout holds %d images: name one as oci:PATH:TAG (tags: %s)",
					len(descs), strings.Join(tags, ", "))
			}
		}
		return pickFrom(idx, descs, o)
	}
	return imageFromDesc(idx, descs[0], o)
}

// pickPlatform picks the image for the wanted platform from an index.
func pickPlatform(idx v1.ImageIndex, o *options) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return pickFrom(idx, im.Manifests, o)
}

func pickFrom(idx v1.ImageIndex, descs []v1.Descriptor, o *options) (v1.Image, error) {
	want := o.wantPlatform()
	var have []string
	for _, d := range descs {
		if d.Platform == nil {
			if len(descs) == 1 {
				return imageFromDesc(idx, d, o)
			}
			continue
		}
		have = append(have, d.Platform.String())
		if d.Platform.Satisfies(want) {
			return imageFromDesc(idx, d, o)
		}
	}
	return nil, fmt.Errorf("no image for %s in the index (it has: %s)", want.String(), strings.Join(have, ", "))
}

func imageFromDesc(idx v1.ImageIndex, d v1.Descriptor, o *options) (v1.Image, error) {
	switch {
	case d.MediaType.IsIndex():
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickPlatform(child, o)
	case d.MediaType.IsImage():
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		got, err := img.Digest()
		if err != nil {
			return nil, err
		}
		if got != d.Digest {
			return nil, fmt.Errorf("manifest %s: %w: its content is %s", d.Digest, ErrDigestMismatch, got)
		}
		return img, nil
	default:
		return nil, fmt.Errorf("unsupported media type %q", d.MediaType)
	}
}

func dockerArchiveImage(path, ref string) (v1.Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	var tag *name.Tag
	if ref != "" {
		t, err := name.NewTag(ref, name.WeakValidation)
		if err != nil {
			return nil, err
		}
		tag = &t
	}
	return tarball.ImageFromPath(path, tag)
}

// importRootfsTar stores a root filesystem tarball as a one-layer OCI
// image. The file is the layer's blob as it is (plain, gzip or zstd), so
// nothing is compressed again.
func (s *Store) importRootfsTar(ctx context.Context, path, imgName string, o *options) (*ImageInfo, error) {
	key, err := normalizeName(imgName)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rootfs: import %s: %w", o.source, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("rootfs: import %s: %w", o.source, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("rootfs: import %s: not a regular file", o.source)
	}
	lk, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	br := bufio.NewReader(f)
	mediaType := types.OCIUncompressedLayer
	switch magic, _ := br.Peek(4); {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		mediaType = types.OCILayer
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mediaType = types.OCILayerZStd
	}
	prog := &progress{fn: o.progress, p: Progress{Layers: 1, Total: fi.Size()}}
	prog.emit("", false)
	var size int64
	digest, diffID, err := s.storeLayer(ctx, br, v1.Hash{}, v1.Hash{}, true, o.maxLayerSize, func(n int64) {
		size += n
		prog.read("", n)
	})
	if err != nil {
		return nil, err
	}
	prog.done(digest.String(), 0, false)
	now := time.Now().UTC().Truncate(time.Second)
	rawConfig, err := json.Marshal(v1.ConfigFile{Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: now},
		RootFS:  v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		History: []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "hutch import rootfs-tar:" + filepath.Base(path)}}})
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawConfig)), Digest: sha256Hash(rawConfig)},
		Layers: []v1.Descriptor{{MediaType: mediaType, Size: size, Digest: digest}}}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return s.saveImage(key, rawManifest, rawConfig, o.source)
}

// add stores img under name: its layers first, then its configuration and
// manifest, and the record last, so that a record only ever names
// complete layers.
func (s *Store) add(ctx context.Context, imgName string, img v1.Image, o *options) (*ImageInfo, error) {
	key, err := normalizeName(imgName)
	if err != nil {
		return nil, err
	}
	lk, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", key, err)
	}
	if !mt.IsImage() {
		return nil, fmt.Errorf("rootfs: %s: unsupported manifest media type %q", key, mt)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: manifest: %w", key, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: manifest: %w", key, err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: configuration: %w", key, err)
	}
	if got := sha256Hash(rawConfig); got != m.Config.Digest {
		return nil, fmt.Errorf("rootfs: %s: configuration: %w: the manifest says %s, its content is %s",
			key, ErrDigestMismatch, m.Config.Digest, got)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: configuration: %w", key, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("rootfs: %s: the manifest has %d layers, the configuration %d",
			key, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("rootfs: %s: image has no layers", key)
	}

	prog := &progress{fn: o.progress, p: Progress{Layers: len(m.Layers)}}
	for _, l := range m.Layers {
		prog.p.Total += l.Size
	}
	prog.emit("", false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(m.Layers))
	sem := make(chan struct{}, parallelLayers)
	var wg sync.WaitGroup
	for i, d := range m.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.ensureLayer(ctx, img, d, cfg.RootFS.DiffIDs[i], o, prog); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	// The first error that is not the cancellation another one caused.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return s.saveImage(key, rawManifest, rawConfig, o.source)
}

// saveImage stores an image's configuration and manifest, whose layers
// are all in, and writes its record.
func (s *Store) saveImage(key string, rawManifest, rawConfig []byte, source string) (*ImageInfo, error) {
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: manifest: %w", key, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: configuration: %w", key, err)
	}
	if err := s.putBlob(m.Config.Digest, rawConfig); err != nil {
		return nil, err
	}
	digest := sha256Hash(rawManifest)
	if err := s.putBlob(digest, rawManifest); err != nil {
		return nil, err
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	info := &ImageInfo{Name: key, Digest: digest.String(), MediaType: string(mt), ID: m.Config.Digest.String(),
		Platform: platformOf(cfg), Created: cfg.Created.Time, Stored: time.Now().UTC(), Source: source,
		Config: runConfig(cfg)}
	for i, d := range m.Layers {
		info.Layers = append(info.Layers, LayerInfo{Digest: d.Digest.String(), DiffID: cfg.RootFS.DiffIDs[i].String(),
			Size: d.Size, MediaType: string(d.MediaType)})
	}
	if err := s.writeRecord(info); err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", key, err)
	}
	return info, nil
}

func platformOf(cfg *v1.ConfigFile) string {
	if p := cfg.Platform(); p != nil {
		return p.String()
	}
	return ""
}

// runConfig is the part of an image configuration a sandbox applies.
func runConfig(cfg *v1.ConfigFile) Config {
	return Config{Env: cfg.Config.Env, Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd,
		WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User}
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// putBlob stores a small blob whose digest the caller has checked.
func (s *Store) putBlob(h v1.Hash, b []byte) error {
	if s.hasBlob(h) {
		return nil
	}
	if err := writeFileAtomic(s.blobPath(h), b); err != nil {
		return fmt.Errorf("rootfs: blob %s: %w", h, err)
	}
	return nil
}

// ensureLayer makes sure the store has the layer d (with uncompressed
// digest diffID) unpacked, and its blob.
func (s *Store) ensureLayer(ctx context.Context, img v1.Image, d v1.Descriptor, diffID v1.Hash, o *options, prog *progress) error {
	if d.Digest.Algorithm != "sha256" || diffID.Algorithm != "sha256" {
		return &LayerError{Digest: d.Digest.String(), Err: fmt.Errorf("unsupported digest algorithm")}
	}
	switch d.MediaType {
	case types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return &LayerError{Digest: d.Digest.String(), Err: fmt.Errorf("non-distributable layers (%s) are not supported", d.MediaType)}
	}
	haveLayer := s.hasLayer(diffID)
	if haveLayer && s.hasBlob(d.Digest) {
		prog.done(d.Digest.String(), d.Size, true)
		return nil
	}
	if !haveLayer {
		// One process unpacks a layer, the others wait and find it done.
		// (A layer that exists needs no lock: only GC removes one, and not
		// while imports run; a Store's shared lease would block this one.)
		lock, err := lockPath(ctx, s.layerLock(diffID), unix.LOCK_EX)
		if err != nil {
			return err
		}
		defer lock.Close()
		if haveLayer = s.hasLayer(diffID); haveLayer && s.hasBlob(d.Digest) {
			prog.done(d.Digest.String(), d.Size, true)
			return nil
		}
	}
	layer, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return &LayerError{Digest: d.Digest.String(), Err: err}
	}
	rc, err := layer.Compressed()
	if err != nil {
		return &LayerError{Digest: d.Digest.String(), Err: err}
	}
	defer rc.Close()
	var read int64
	_, _, err = s.storeLayer(ctx, rc, d.Digest, diffID, !haveLayer, o.maxLayerSize, func(n int64) {
		read += n
		prog.read(d.Digest.String(), n)
	})
	if err != nil {
		return err
	}
	prog.done(d.Digest.String(), d.Size-read, false)
	return nil
}

// storeLayer reads a layer blob from r, stores it as a blob and, when
// unpack is set, unpacks it into layers/. A zero wantDigest or wantDiffID
// is not checked (a commit's layer is what it is). The work happens in a
// temporary directory that is renamed into place only once both digests
// are checked: a failure, a crash or a kill leaves nothing under blobs/ or
// layers/. The caller must hold the layer's lock when it knows the diffID.
func (s *Store) storeLayer(ctx context.Context, r io.Reader, wantDigest, wantDiffID v1.Hash, unpack bool, max int64,
	onRead func(int64)) (digest, diffID v1.Hash, err error) {
	fail := func(err error) (v1.Hash, v1.Hash, error) {
		var le *LayerError
		if errors.As(err, &le) {
			if le.Digest == "" && wantDigest.Hex != "" {
				le.Digest = wantDigest.String()
			}
			return v1.Hash{}, v1.Hash{}, le
		}
		if ctx.Err() != nil {
			return v1.Hash{}, v1.Hash{}, err
		}
		d := ""
		if wantDigest.Hex != "" {
			d = wantDigest.String()
		}
		return v1.Hash{}, v1.Hash{}, &LayerError{Digest: d, Err: err}
	}
	tmp, tmpLock, err := s.newTemp("layer-")
	if err != nil {
		return fail(err)
	}
	defer dropTemp(tmp, tmpLock)
	blob, err := os.OpenFile(filepath.Join(tmp, "blob"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	defer blob.Close()

	compressedHash, uncompressedHash := sha256.New(), sha256.New()
	counted := &countingReader{r: r, fn: onRead}
	br := bufio.NewReaderSize(io.TeeReader(counted, io.MultiWriter(blob, compressedHash)), 64<<10)
	dec, err := decompress(br)
	if err != nil {
		return fail(err)
	}
	defer dec.Close()
	limited := &limitReader{r: dec, max: max, compressed: &counted.n}
	stream := io.TeeReader(limited, uncompressedHash)
	fsDir := filepath.Join(tmp, "fs")
	if unpack {
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			return fail(err)
		}
		if err := applyTar(ctx, stream, fsDir, max); err != nil {
			return fail(err)
		}
	}
	// The digests cover the whole stream: padding after the tar's end,
	// and anything after the compressed stream.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fail(err)
	}
	digest = hashOf(compressedHash)
	diffID = hashOf(uncompressedHash)
	if wantDigest.Hex != "" && digest != wantDigest {
		return fail(&LayerError{Err: fmt.Errorf("%w: the blob's content is %s", ErrDigestMismatch, digest)})
	}
	if wantDiffID.Hex != "" && diffID != wantDiffID {
		return fail(&LayerError{Err: fmt.Errorf("%w: the layer's uncompressed content is %s, the configuration says %s",
			ErrDigestMismatch, diffID, wantDiffID)})
	}
	if err := blob.Sync(); err != nil {
		return fail(err)
	}
	if unpack {
		// Everything written must be on disk before the rename makes the
		// layer look complete.
		if err := unix.Syncfs(int(blob.Fd())); err != nil {
			return fail(err)
		}
		err := os.Rename(fsDir, s.layerPath(diffID))
		if err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return fail(err)
		}
	}
	if err := os.Rename(filepath.Join(tmp, "blob"), s.blobPath(digest)); err != nil {
		return fail(err)
	}
	return digest, diffID, nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// decompress returns the tar stream inside r: gzip and zstd are
// recognised by their magic numbers, anything else is taken for a plain
// tar.
func decompress(r *bufio.Reader) (io.ReadCloser, error) {
	magic, _ := r.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, &LayerError{Err: fmt.Errorf("gzip: %w", err)}
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, &LayerError{Err: fmt.Errorf("zstd: %w", err)}
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, &LayerError{Err: errors.New("xz-compressed tarballs are not supported: decompress it first")}
	case bytes.HasPrefix(magic, []byte("BZh")):
		return nil, &LayerError{Err: errors.New("bzip2-compressed tarballs are not supported: decompress it first")}
	}
	return io.NopCloser(r), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.fn != nil {
		c.fn(int64(n))
	}
	return n, err
}

// limitReader stops a decompressed stream that grows past max bytes, or
// that expands like a decompression bomb.
type limitReader struct {
	r          io.Reader
	n, max     int64
	compressed *int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return 0, fmt.Errorf("%w: unpacks to more than %d bytes", ErrLayerTooLarge, l.max)
	}
	if l.n > bombMinSize && l.n > bombRatio*max(*l.compressed, 1) {
		return 0, fmt.Errorf("%w: %d bytes from %d compressed, a ratio over %d:1: a decompression bomb",
			ErrLayerTooLarge, l.n, *l.compressed, bombRatio)
	}
	return n, err
}

// progress serializes and throttles the reports of an import.
type progress struct {
	fn   func(Progress)
	mu   sync.Mutex
	p    Progress
	last time.Time
}

func (p *progress) read(layer string, n int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Bytes += n
	if time.Since(p.last) >= 100*time.Millisecond {
		p.emitLocked(layer, false)
	}
}

// done reports a layer stored; unread is what of its size was not counted
// by read (all of it for a layer already there).
func (p *progress) done(layer string, unread int64, cached bool) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.LayersDone++
	p.p.Bytes += max(unread, 0)
	p.emitLocked(layer, cached)
}

func (p *progress) emit(layer string, cached bool) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.emitLocked(layer, cached)
}

func (p *progress) emitLocked(layer string, cached bool) {
	p.last = time.Now()
	r := p.p
	r.Layer, r.Cached = layer, cached
	p.fn(r)
}
