package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// EnvStoreDir is the environment variable that, when set to a non-empty
// value, names the store directory [DefaultStoreDir] returns.
const EnvStoreDir = "HUTCH_STORE_DIR"

// DefaultStoreDir returns the directory [OpenStore] uses when it is given
// none, without creating it:
//
//   - $HUTCH_STORE_DIR, when set and not empty (made absolute);
//   - /var/lib/hutch when the process runs as root on Linux;
//   - $XDG_DATA_HOME/hutch, when $XDG_DATA_HOME is an absolute path;
//   - otherwise ~/.local/share/hutch (or hutch-store-<uid> in
//     [os.TempDir] when the home directory is unknown).
//
// Unlike the runtime state directory (/run/hutch), the store is meant to
// survive reboots: what it holds is costly to download again.
func DefaultStoreDir() string {
	return storeDirFor(os.Getenv, os.Geteuid(), runtime.GOOS)
}

func storeDirFor(getenv func(string) string, euid int, goos string) string {
	if d := getenv(EnvStoreDir); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return filepath.Clean(d)
	}
	if euid == 0 && goos == "linux" {
		return "/var/lib/hutch"
	}
	if d := getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "hutch")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "hutch")
	}
	return filepath.Join(os.TempDir(), "hutch-store-"+strconv.Itoa(euid))
}

// Store is a directory of images: their layers unpacked once, named by the
// digest of their uncompressed content and shared read-only by every
// sandbox that runs one of them, and image records that map a name such as
// "busybox:latest" to a manifest and a configuration.
//
// Images get in by [Store.Import] (an OCI image layout, a docker-save
// tarball, a plain root filesystem tarball), [Store.Pull] (a registry) and
// [Store.Commit] (a sandbox's writable layer on top of a stored image), and
// out by [Store.Export] (an OCI image layout). [Store.Image] makes a stored
// image an [Image] a sandbox runs on.
//
// A Store is safe for concurrent use by many goroutines, and many
// processes may open the same directory at once: they coordinate with file
// locks, and everything is written to a temporary directory and renamed
// into place, so that a process killed halfway leaves nothing that looks
// complete. The caller must Close a Store it no longer needs: until then
// the layers of every image it resolved count as in use, and
// [Store.GC] keeps them.
//
// Layer directories are applied with overlayfs whiteouts (a deletion is a
// 0/0 character device, an opaque directory carries the
// trusted.overlay.opaque xattr, user.overlay.opaque when the process is not
// root). Without root, files keep the caller as their owner (they cannot be
// given away), which a sandbox's user namespace shows as root; device nodes
// other than whiteouts are skipped; only user.* xattrs are kept.
//
// Stores are Linux only: elsewhere [OpenStore] fails with an error that
// wraps [errors.ErrUnsupported].
type Store struct {
	dir string

	mu     sync.Mutex
	closed bool
	// leases are the shared locks held on the layers this Store resolved,
	// by uncompressed digest.
	leases map[string]*os.File
	// temps are the locks held on temporary directories handed out by
	// NewWritableLayer, by path.
	temps map[string]*os.File
}

// Dir returns the store's directory: absolute, without symbolic links.
func (s *Store) Dir() string { return s.dir }

// ImageInfo describes a stored image.
type ImageInfo struct {
	// Name is the image's name in the store: "repository:tag", or
	// "repository@sha256:..." for an image pulled by digest.
	Name string `json:"name"`
	// Digest is the digest of the image's manifest, as a registry knows
	// it: "sha256:" and 64 hex digits.
	Digest string `json:"digest"`
	// MediaType is the manifest's media type (OCI or Docker).
	MediaType string `json:"mediaType"`
	// ID is the digest of the image's configuration, what Docker calls the
	// image ID.
	ID string `json:"id"`
	// Layers are the image's layers, bottom first as in the manifest.
	Layers []LayerInfo `json:"layers"`
	// Platform is the image's "os/architecture[/variant]".
	Platform string `json:"platform,omitempty"`
	// Created is when the image was built, as its configuration says
	// (zero when it does not).
	Created time.Time `json:"created,omitempty"`
	// Stored is when the image was added to the store.
	Stored time.Time `json:"stored"`
	// Source says where the image came from: the reference pulled, the
	// transport:path imported, or "commit of NAME".
	Source string `json:"source,omitempty"`
	// Config is how the image asks to be run.
	Config Config `json:"config"`
}

// Size is the sum of the sizes of the image's layers as stored
// (compressed).
func (i *ImageInfo) Size() int64 {
	var n int64
	for _, l := range i.Layers {
		n += l.Size
	}
	return n
}

// LayerInfo describes one layer of a stored image.
type LayerInfo struct {
	// Digest is the digest of the layer's blob as stored and exported
	// (usually gzip-compressed).
	Digest string `json:"digest"`
	// DiffID is the digest of the layer's uncompressed tar stream: it
	// names the directory the layer is unpacked into.
	DiffID string `json:"diffID"`
	// Size is the size of the blob in bytes.
	Size int64 `json:"size"`
	// MediaType is the blob's media type.
	MediaType string `json:"mediaType"`
}

// Progress reports how an import or a pull is going. Bytes count the
// layers' blobs as they are read (compressed, as transferred); a layer
// already in the store counts as read at once.
type Progress struct {
	// Layers is the image's number of layers; LayersDone how many of them
	// are in the store so far.
	Layers, LayersDone int
	// Bytes is how many bytes of the layers have been read, of Total.
	// Total is 0 while the sizes are not known.
	Bytes, Total int64
	// Layer is the digest of the layer the report is about, "" for one
	// about the whole image.
	Layer string
	// Cached is set when Layer was already in the store.
	Cached bool
}

// ChangeKind is what happened to a path in a [Change].
type ChangeKind int

// Kinds of change, as docker diff prints them: A, C and D.
const (
	Added ChangeKind = iota + 1
	Changed
	Deleted
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "A"
	case Changed:
		return "C"
	case Deleted:
		return "D"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// Change is one path a sandbox added, changed or deleted, as [Diff] reports
// it.
type Change struct {
	Kind ChangeKind
	// Path is absolute, as the sandbox saw it: "/etc/passwd".
	Path string
}

// String formats the change as docker diff does: "A /data".
func (c Change) String() string { return c.Kind.String() + " " + c.Path }

// GCResult says what [Store.GC] removed.
type GCResult struct {
	// Layers and Blobs are how many unpacked layers and stored blobs no
	// image referenced; Temp how many leftovers of interrupted operations
	// were removed.
	Layers, Blobs, Temp int
	// Bytes is about how much space that freed (the sizes of the files).
	Bytes int64
	// InUse counts layers no image references that were kept because a
	// live Store has resolved them.
	InUse int
}

// Errors that a [*LayerError] wraps.
var (
	// ErrUnsafePath: a tar entry's name or link target is absolute, has a
	// ".." element, or leads through a symbolic link.
	ErrUnsafePath = errors.New("path leaves the layer")
	// ErrDigestMismatch: a blob's content does not have the digest its
	// manifest or configuration says.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrLayerTooLarge: a layer unpacks to more than the limit
	// ([WithMaxLayerSize]), or its compression ratio is that of a
	// decompression bomb.
	ErrLayerTooLarge = errors.New("layer too large")
)

// LayerError reports a layer that could not be stored. Nothing of it is
// left in the store.
type LayerError struct {
	// Digest is the layer's blob digest, when known.
	Digest string
	// Entry is the name of the tar entry at fault, when there is one.
	Entry string
	Err   error
}

func (e *LayerError) Error() string {
	msg := "rootfs: layer"
	if e.Digest != "" {
		msg += " " + e.Digest
	}
	if e.Entry != "" {
		msg += ": entry " + strconv.Quote(e.Entry)
	}
	return msg + ": " + e.Err.Error()
}

func (e *LayerError) Unwrap() error { return e.Err }
