package rootfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// The store's directory:
//
//	DIR/version                   the layout's version, "1"
//	DIR/store.lock                shared by imports and commits, exclusive for GC
//	DIR/blobs/sha256/HEX          manifests, configurations and layer blobs as stored
//	DIR/layers/sha256/HEX/        a layer unpacked, named by its uncompressed digest
//	DIR/locks/HEX                 a layer's lock: exclusive to unpack it, shared while in use
//	DIR/images/NAME.json          image records, NAME path-escaped ("busybox:latest.json")
//	DIR/tmp/ID/, DIR/tmp/ID.lock  work directories of operations in progress
const (
	storeVersion = "1"
	blobsDir     = "blobs/sha256"
	layersDir    = "layers/sha256"
	locksDir     = "locks"
	imagesDir    = "images"
	workDirs     = "tmp"
	storeLock    = "store.lock"
)

// OpenStore opens the image store in dir, creating it if needed; dir ""
// means [DefaultStoreDir]. The directory is made with mode 0700 and must be
// owned by the effective user and writable by no one else, or OpenStore
// fails with an error that wraps [fs.ErrPermission]: whoever can write
// there decides what the caller's sandboxes run.
//
// The caller must Close the store.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		dir = DefaultStoreDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs: store: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("rootfs: store: %w", err)
	}
	if err := os.Mkdir(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("rootfs: store: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("rootfs: store: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, &fs.PathError{Op: "store", Path: real, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil, &fs.PathError{Op: "store", Path: real, Err: syscall.ENOTDIR}
	case int(st.Uid) != os.Geteuid():
		return nil, &fs.PathError{Op: "store", Path: real,
			Err: fmt.Errorf("owned by uid %d, not %d: %w", st.Uid, os.Geteuid(), fs.ErrPermission)}
	case st.Mode&0o022 != 0:
		return nil, &fs.PathError{Op: "store", Path: real,
			Err: fmt.Errorf("writable by group or others (mode %#o): %w", st.Mode&0o777, fs.ErrPermission)}
	}
	for _, d := range []string{blobsDir, layersDir, locksDir, imagesDir, workDirs} {
		if err := os.MkdirAll(filepath.Join(real, d), 0o700); err != nil {
			return nil, fmt.Errorf("rootfs: store: %w", err)
		}
	}
	vf := filepath.Join(real, "version")
	switch b, err := os.ReadFile(vf); {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeFileAtomic(vf, []byte(storeVersion+"\n")); err != nil {
			return nil, fmt.Errorf("rootfs: store: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("rootfs: store: %w", err)
	case strings.TrimSpace(string(b)) != storeVersion:
		return nil, fmt.Errorf("rootfs: store %s: layout version %q, this hutch knows %q",
			real, strings.TrimSpace(string(b)), storeVersion)
	}
	return &Store{dir: real, leases: map[string]*os.File{}, temps: map[string]*os.File{}}, nil
}

// Close releases what the store holds: its layers no longer count as in
// use by this Store, and the writable layers it handed out that were not
// removed are left for [Store.GC]. Images already resolved keep working
// (their directories stay), but a GC may now remove their layers once no
// image references them.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, f := range s.leases {
		f.Close()
	}
	for _, f := range s.temps {
		f.Close()
	}
	s.leases, s.temps = nil, nil
	return nil
}

var errClosed = errors.New("rootfs: store is closed")

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) blobPath(h v1.Hash) string  { return s.path(blobsDir, h.Hex) }
func (s *Store) layerPath(h v1.Hash) string { return s.path(layersDir, h.Hex) }
func (s *Store) layerLock(h v1.Hash) string { return s.path(locksDir, h.Hex) }

func (s *Store) recordPath(key string) string {
	return s.path(imagesDir, url.PathEscape(key)+".json")
}

// lockStore takes the store-wide lock: shared for operations that add
// things, exclusive for GC.
func (s *Store) lockStore(ctx context.Context, how int) (*os.File, error) {
	f, err := lockPath(ctx, s.path(storeLock), how)
	if err != nil {
		return nil, fmt.Errorf("rootfs: store lock: %w", err)
	}
	return f, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// hasLayer reports whether the layer with uncompressed digest diffID is
// unpacked. A directory under layers/ is complete by construction: it is
// renamed there only once fully written.
func (s *Store) hasLayer(diffID v1.Hash) bool { return exists(s.layerPath(diffID)) }
func (s *Store) hasBlob(h v1.Hash) bool       { return exists(s.blobPath(h)) }

// newTemp makes a fresh work directory under tmp/, locked so that GC
// leaves it alone, and returns it with the function that removes it.
func (s *Store) newTemp(prefix string) (dir string, lock *os.File, err error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	dir = s.path(workDirs, prefix+hex.EncodeToString(b[:]))
	lock, ok, err := tryLockPath(dir+".lock", unix.LOCK_EX)
	if err == nil && !ok {
		err = fmt.Errorf("rootfs: temporary %s is locked", dir)
	}
	if err != nil {
		return "", nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		os.Remove(dir + ".lock")
		lock.Close()
		return "", nil, err
	}
	return dir, lock, nil
}

// dropTemp removes a work directory made by newTemp.
func dropTemp(dir string, lock *os.File) {
	forceRemoveAll(dir)
	os.Remove(dir + ".lock")
	lock.Close()
}

// NewWritableLayer makes an empty directory inside the store for a
// sandbox's writable layer (sandbox.Cmd.WritableLayer) that is to be
// committed: on the store's file system, so that the commit can use it
// directly. The directory is kept from [Store.GC] until remove is called
// or the Store is closed; remove deletes it.
func (s *Store) NewWritableLayer() (dir string, remove func() error, err error) {
	dir, lock, err := s.newTemp("wl-")
	if err != nil {
		return "", nil, fmt.Errorf("rootfs: writable layer: %w", err)
	}
	// The sandbox's root becomes the overlay's upper directory: it must be
	// reachable by the sandbox's user.
	if err := os.Chmod(dir, 0o755); err != nil {
		dropTemp(dir, lock)
		return "", nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		dropTemp(dir, lock)
		return "", nil, errClosed
	}
	s.temps[dir] = lock
	s.mu.Unlock()
	remove = func() error {
		s.mu.Lock()
		l, ok := s.temps[dir]
		delete(s.temps, dir)
		s.mu.Unlock()
		err := forceRemoveAll(dir)
		os.Remove(dir + ".lock")
		if ok {
			l.Close()
		}
		return err
	}
	return dir, remove, nil
}

// forceRemoveAll removes path like os.RemoveAll, first making directories
// writable where that stands in the way (a layer unpacked without root
// keeps modes such as 0555 that the owner cannot delete from).
func forceRemoveAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that a reader sees the old content or the new, never a
// part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// notFound is the error of an image that is not in the store.
func notFound(name string) error {
	return &fs.PathError{Op: "image", Path: name, Err: fs.ErrNotExist}
}

// Lookup returns the record of the image name ("repository[:tag]", tag
// latest by default, or "repository@sha256:..."). An image that is not in
// the store is an *fs.PathError that wraps [fs.ErrNotExist].
func (s *Store) Lookup(name string) (*ImageInfo, error) {
	key, err := normalizeName(name)
	if err != nil {
		return nil, err
	}
	return s.readRecord(key)
}

func (s *Store) readRecord(key string) (*ImageInfo, error) {
	b, err := os.ReadFile(s.recordPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(key)
	}
	if err != nil {
		return nil, fmt.Errorf("rootfs: image %s: %w", key, err)
	}
	var info ImageInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("rootfs: image %s: bad record: %w", key, err)
	}
	return &info, nil
}

func (s *Store) writeRecord(info *ImageInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(info.Name), append(b, '\n'))
}

// Images returns the records of every stored image, sorted by name.
func (s *Store) Images() ([]ImageInfo, error) {
	entries, err := os.ReadDir(s.path(imagesDir))
	if err != nil {
		return nil, fmt.Errorf("rootfs: images: %w", err)
	}
	var out []ImageInfo
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
			continue
		}
		key, err := url.PathUnescape(strings.TrimSuffix(n, ".json"))
		if err != nil {
			continue
		}
		info, err := s.readRecord(key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the record of the image name. Its layers and blobs stay
// until [Store.GC] finds that no image references them; a sandbox already
// running on the image is not disturbed.
func (s *Store) Remove(name string) error {
	key, err := normalizeName(name)
	if err != nil {
		return err
	}
	if err := os.Remove(s.recordPath(key)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return notFound(key)
		}
		return fmt.Errorf("rootfs: remove %s: %w", key, err)
	}
	return nil
}

// GC removes what no image needs: unpacked layers and blobs that no image
// record references, and the leftovers of operations that were
// interrupted (a process killed mid-import). A layer is in use, and kept,
// while an image record references it or while a live [Store] (in this
// process or another) has resolved an image made of it and is not closed.
//
// GC waits for imports, pulls and commits in progress to finish (they hold
// the store lock shared; GC takes it exclusive), until ctx is done.
func (s *Store) GC(ctx context.Context) (*GCResult, error) {
	lk, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	images, err := s.Images()
	if err != nil {
		return nil, err
	}
	layers, blobs := map[string]bool{}, map[string]bool{}
	for _, img := range images {
		for _, d := range []string{img.Digest, img.ID} {
			if h, err := v1.NewHash(d); err == nil {
				blobs[h.Hex] = true
			}
		}
		for _, l := range img.Layers {
			if h, err := v1.NewHash(l.Digest); err == nil {
				blobs[h.Hex] = true
			}
			if h, err := v1.NewHash(l.DiffID); err == nil {
				layers[h.Hex] = true
			}
		}
	}
	res := &GCResult{}

	entries, err := os.ReadDir(s.path(layersDir))
	if err != nil {
		return nil, fmt.Errorf("rootfs: gc: %w", err)
	}
	for _, e := range entries {
		hex := e.Name()
		if layers[hex] {
			continue
		}
		lock, ok, err := tryLockPath(s.path(locksDir, hex), unix.LOCK_EX)
		if err != nil {
			return res, fmt.Errorf("rootfs: gc: %w", err)
		}
		if !ok {
			res.InUse++
			continue
		}
		// Move it out of layers/ first: a GC killed halfway must not leave
		// a partial layer where a complete one is expected.
		dir := s.path(layersDir, hex)
		size := diskUsage(dir)
		trash := s.path(workDirs, "gc-"+hex)
		forceRemoveAll(trash)
		err = os.Rename(dir, trash)
		if err == nil {
			err = forceRemoveAll(trash)
			os.Remove(s.path(locksDir, hex))
		}
		lock.Close()
		if err != nil {
			return res, fmt.Errorf("rootfs: gc: %w", err)
		}
		res.Layers++
		res.Bytes += size
	}

	entries, err = os.ReadDir(s.path(blobsDir))
	if err != nil {
		return nil, fmt.Errorf("rootfs: gc: %w", err)
	}
	for _, e := range entries {
		if blobs[e.Name()] {
			continue
		}
		p := s.path(blobsDir, e.Name())
		size := diskUsage(p)
		if err := os.Remove(p); err != nil {
			return res, fmt.Errorf("rootfs: gc: %w", err)
		}
		res.Blobs++
		res.Bytes += size
	}

	// Work directories: an unlocked one was left by a process that died.
	entries, err = os.ReadDir(s.path(workDirs))
	if err != nil {
		return nil, fmt.Errorf("rootfs: gc: %w", err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		n := e.Name()
		if base, isLock := strings.CutSuffix(n, ".lock"); isLock {
			lock, ok, err := tryLockPath(s.path(workDirs, n), unix.LOCK_EX)
			if err != nil || !ok {
				continue
			}
			if names[base] {
				res.Bytes += diskUsage(s.path(workDirs, base))
				forceRemoveAll(s.path(workDirs, base))
				res.Temp++
			}
			os.Remove(s.path(workDirs, n))
			lock.Close()
			continue
		}
		// A work directory's lock file is made before it and removed after
		// it: one without is a leftover (of a GC killed halfway), unless
		// both appeared while the directory was being listed.
		if !names[n+".lock"] && !exists(s.path(workDirs, n+".lock")) {
			res.Bytes += diskUsage(s.path(workDirs, n))
			forceRemoveAll(s.path(workDirs, n))
			res.Temp++
		}
	}
	// Half-written records (they are written under the shared store lock).
	if entries, err := os.ReadDir(s.path(imagesDir)); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				os.Remove(s.path(imagesDir, e.Name()))
			}
		}
	}
	// Lock files of layers that are gone, unless someone holds them.
	if entries, err := os.ReadDir(s.path(locksDir)); err == nil {
		for _, e := range entries {
			if exists(s.path(layersDir, e.Name())) {
				continue
			}
			if lock, ok, err := tryLockPath(s.path(locksDir, e.Name()), unix.LOCK_EX); err == nil && ok {
				os.Remove(s.path(locksDir, e.Name()))
				lock.Close()
			}
		}
	}
	return res, nil
}

// diskUsage sums the sizes of the files under path.
func diskUsage(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Image returns the stored image name as an [Image]. Nothing is read until
// Resolve, which finds the image's record (an *fs.PathError that wraps
// [fs.ErrNotExist] when there is none), marks its layers in use by this
// Store (see [Store.GC]) and returns them, top first, with the image's
// configuration.
func (s *Store) Image(name string) Image { return storeImage{s: s, name: name} }

type storeImage struct {
	s    *Store
	name string
}

func (i storeImage) String() string { return "store image " + strconv.Quote(i.name) }

func (i storeImage) Resolve() (*Spec, error) {
	info, err := i.s.Lookup(i.name)
	if err != nil {
		return nil, err
	}
	spec := &Spec{Layers: make([]string, len(info.Layers))}
	for n, l := range info.Layers {
		h, err := v1.NewHash(l.DiffID)
		if err != nil {
			return nil, fmt.Errorf("rootfs: image %s: bad record: %w", info.Name, err)
		}
		if err := i.s.lease(h); err != nil {
			return nil, err
		}
		dir := i.s.layerPath(h)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			i.s.unlease(h)
			return nil, &fs.PathError{Op: "image", Path: dir, Err: fmt.Errorf("layer of %s missing: %w", info.Name, fs.ErrNotExist)}
		}
		spec.Layers[len(info.Layers)-1-n] = dir
	}
	cfg := info.Config
	spec.Config = &cfg
	return spec, nil
}

// lease marks the layer in use by this Store until it is closed.
func (s *Store) lease(diffID v1.Hash) error {
	s.mu.Lock()
	closed, held := s.closed, s.leases[diffID.Hex] != nil
	s.mu.Unlock()
	if closed {
		return errClosed
	}
	if held {
		return nil
	}
	f, err := lockPath(context.Background(), s.layerLock(diffID), unix.LOCK_SH)
	if err != nil {
		return fmt.Errorf("rootfs: layer %s: %w", diffID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		f.Close()
		return errClosed
	case s.leases[diffID.Hex] != nil:
		f.Close()
	default:
		s.leases[diffID.Hex] = f
	}
	return nil
}

// unlease drops the lease on a layer that turned out to be missing, so
// that an import can unpack it.
func (s *Store) unlease(diffID v1.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.leases[diffID.Hex]; f != nil {
		f.Close()
		delete(s.leases, diffID.Hex)
	}
}
