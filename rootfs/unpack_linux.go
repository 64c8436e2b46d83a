package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Overlayfs whiteouts, as OCI layers write them.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// opaqueXattr is the xattr that makes a directory opaque for overlayfs:
// trusted.* as root, user.* for an overlay mounted with userxattr (without
// root).
func opaqueXattr() string {
	if os.Geteuid() == 0 {
		return "trusted.overlay.opaque"
	}
	return "user.overlay.opaque"
}

// cleanPath checks a tar entry's name (or a hard link's target) and
// returns it relative to the layer's root, without "." elements: "" for
// the root itself. An absolute name or one with a ".." element is
// refused, whatever it would resolve to.
func cleanPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute path", ErrUnsafePath)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	var elems []string
	for _, e := range strings.Split(name, "/") {
		switch e {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%w: \"..\" in path", ErrUnsafePath)
		default:
			elems = append(elems, e)
		}
	}
	return strings.Join(elems, "/"), nil
}

// dirMeta is what a directory gets once every entry is in: its mode,
// owner and times are set last, deepest first, since creating entries
// changes a directory's times and a read-only mode would stop the
// unpacking.
type dirMeta struct {
	mode     uint32
	uid, gid int
	owner    bool // uid and gid apply
	atime    time.Time
	mtime    time.Time
	times    bool // atime and mtime apply
}

// unpacker applies one layer's tar stream to an empty directory, turning
// OCI whiteouts into overlayfs ones. Every name is resolved from the
// layer's root one element at a time with O_NOFOLLOW, so no entry can
// reach outside the directory: not by "..", an absolute name, a symbolic
// link in the way, or a hard link's target.
type unpacker struct {
	root     int // the layer directory
	rootPath string
	asRoot   bool
	opaque   string
	max      int64 // most bytes the regular files may declare
	declared int64
	dirs     map[string]*dirMeta
	dirOrder []string
	// whiteouts are the whiteouts made so far (a later entry of the same
	// name replaces one: a whiteout hides only the layers below).
	whiteouts map[string]bool
	// cache is the directory of the last entry, still open.
	cacheRel string
	cacheFd  int
	buf      []byte
}

func newUnpacker(dir string, max int64) (*unpacker, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &unpacker{root: fd, rootPath: dir, asRoot: os.Geteuid() == 0, opaque: opaqueXattr(), max: max,
		dirs: map[string]*dirMeta{"": {mode: 0o755}}, dirOrder: []string{""},
		whiteouts: map[string]bool{}, cacheFd: -1, buf: make([]byte, 128<<10)}, nil
}

func (u *unpacker) close() {
	u.dropCache()
	unix.Close(u.root)
}

func (u *unpacker) dropCache() {
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
	}
	u.cacheFd, u.cacheRel = -1, ""
}

// applyTar unpacks the tar stream r into the empty directory dir.
func applyTar(ctx context.Context, r io.Reader, dir string, max int64) error {
	u, err := newUnpacker(dir, max)
	if err != nil {
		return err
	}
	defer u.close()
	tail := &tailReader{r: r}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if !tail.trailer() {
				return &LayerError{Err: fmt.Errorf("truncated tar: %w", io.ErrUnexpectedEOF)}
			}
			break
		}
		if err != nil {
			return &LayerError{Err: fmt.Errorf("reading tar: %w", err)}
		}
		if err := u.entry(hdr, tr); err != nil {
			var le *LayerError
			if errors.As(err, &le) {
				return err
			}
			return &LayerError{Entry: hdr.Name, Err: err}
		}
	}
	if err := u.finish(); err != nil {
		return &LayerError{Err: err}
	}
	return nil
}

// tailReader remembers whether its reader ended, and the last 1 KiB it
// gave: archive/tar takes a stream that stops between two entries for a
// complete one, but a complete one ends with two zero blocks.
type tailReader struct {
	r    io.Reader
	tail []byte
	eof  bool
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= 1024 {
		t.tail = append(t.tail[:0], p[n-1024:n]...)
	} else if n > 0 {
		t.tail = append(t.tail, p[:n]...)
		if len(t.tail) > 1024 {
			t.tail = t.tail[len(t.tail)-1024:]
		}
	}
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

// trailer reports whether the stream ended properly: the tar reader
// stopped before the end of the stream (at the end-of-archive blocks), or
// the stream ends with them.
func (t *tailReader) trailer() bool {
	return !t.eof || len(t.tail) == 1024 && isZero(t.tail)
}

var zeros [128 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("the layer's root is not a directory")
		}
		u.dirs[""] = u.metaOf(hdr)
		return nil
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return u.regular(hdr, dir, base, rel, r)
	case tar.TypeDir:
		return u.directory(hdr, dir, base, rel)
	case tar.TypeSymlink:
		return u.symlink(hdr, dir, base, rel)
	case tar.TypeLink:
		return u.hardlink(hdr, dir, base, rel)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.node(hdr, dir, base, rel)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
}

func (u *unpacker) metaOf(hdr *tar.Header) *dirMeta {
	m := &dirMeta{mode: uint32(hdr.Mode) & 0o7777, uid: hdr.Uid, gid: hdr.Gid, owner: true,
		mtime: hdr.ModTime, atime: hdr.AccessTime, times: !hdr.ModTime.IsZero()}
	if m.atime.IsZero() {
		m.atime = m.mtime
	}
	return m
}

// parent returns an open descriptor of the directory rel (relative to the
// root), creating missing directories when create is set. The caller must
// not close it. A symbolic link on the way is an error: no entry of a
// layer legitimately lies beneath one.
func (u *unpacker) parent(rel string, create bool) (int, error) {
	if rel == "" {
		return u.root, nil
	}
	if u.cacheFd >= 0 && u.cacheRel == rel {
		return u.cacheFd, nil
	}
	fd, err := u.openDir(rel, create)
	if err != nil {
		return -1, err
	}
	u.dropCache()
	u.cacheFd, u.cacheRel = fd, rel
	return fd, nil
}

// openDir opens the directory rel, which the caller must close.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	cur := u.root
	done := ""
	for _, e := range strings.Split(rel, "/") {
		here := path.Join(done, e)
		fd, err := unix.Openat(cur, e, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			fd, err = u.fixDir(cur, e, here, create, err)
		}
		if cur != u.root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur, done = fd, here
	}
	return cur, nil
}

// fixDir handles a path element that openat could not open as a
// directory: it creates a missing one, replaces a whiteout of this layer by
// an opaque directory, and refuses anything else.
func (u *unpacker) fixDir(parent int, name, rel string, create bool, openErr error) (int, error) {
	var st unix.Stat_t
	err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == unix.ENOENT && create:
		if err := unix.Mkdirat(parent, name, 0o700); err != nil {
			return -1, &os.PathError{Op: "mkdir", Path: rel, Err: err}
		}
		u.addDir(rel, &dirMeta{mode: 0o755})
	case err != nil:
		return -1, &os.PathError{Op: "open", Path: rel, Err: err}
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return -1, fmt.Errorf("%w: %s is a symbolic link", ErrUnsafePath, rel)
	case u.whiteouts[rel]:
		delete(u.whiteouts, rel)
		if err := unix.Unlinkat(parent, name, 0); err != nil {
			return -1, &os.PathError{Op: "unlink", Path: rel, Err: err}
		}
		if err := unix.Mkdirat(parent, name, 0o700); err != nil {
			return -1, &os.PathError{Op: "mkdir", Path: rel, Err: err}
		}
		u.addDir(rel, &dirMeta{mode: 0o755})
		if err := u.setOpaqueAt(parent, name); err != nil {
			return -1, err
		}
	default:
		return -1, &os.PathError{Op: "open", Path: rel, Err: openErr}
	}
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return fd, nil
}

func (u *unpacker) addDir(rel string, m *dirMeta) {
	if _, ok := u.dirs[rel]; !ok {
		u.dirOrder = append(u.dirOrder, rel)
	}
	u.dirs[rel] = m
}

func (u *unpacker) setOpaqueAt(parent int, name string) error {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return u.setOpaque(fd)
}

func (u *unpacker) setOpaque(fd int) error {
	if err := unix.Fsetxattr(fd, u.opaque, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking an opaque directory (%s): %w", u.opaque, err)
	}
	return nil
}

// clear makes room for an entry named base in the directory parent. An
// existing directory stays when the new entry is one too; anything else is
// removed. It reports whether what was there was a whiteout of this layer.
func (u *unpacker) clear(parent int, base, rel string, dir bool) (wasWhiteout bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, &os.PathError{Op: "stat", Path: rel, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && dir {
		return false, nil
	}
	wasWhiteout = u.whiteouts[rel]
	delete(u.whiteouts, rel)
	if isDir {
		// The parents of rel were walked without following links, so the
		// path names the directory found there.
		u.dropCache()
		for d := range u.dirs {
			if d == rel || strings.HasPrefix(d, rel+"/") {
				delete(u.dirs, d)
			}
		}
		if err := forceRemoveAll(path.Join(u.rootPath, rel)); err != nil {
			return false, err
		}
		return false, nil
	}
	if err := unix.Unlinkat(parent, base, 0); err != nil {
		return false, &os.PathError{Op: "unlink", Path: rel, Err: err}
	}
	return wasWhiteout, nil
}

func (u *unpacker) whiteout(dir, base string) error {
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		return u.setOpaque(parent)
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	switch {
	case strings.HasPrefix(name, whiteoutPrefix):
		return nil // other .wh..wh. files are aufs bookkeeping
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: bad whiteout", ErrUnsafePath)
	}
	rel := path.Join(dir, name)
	// A whiteout hides what the layers below have; an entry of the same
	// name in this layer stays.
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("making whiteout %s (a 0/0 character device): %w", rel, err)
	}
	u.whiteouts[rel] = true
	return nil
}

func (u *unpacker) regular(hdr *tar.Header, dir, base, rel string, r io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("negative size")
	}
	if u.declared+hdr.Size > u.max || hdr.Size > u.max {
		return fmt.Errorf("%w: %s declares %d bytes, past the limit of %d for the layer",
			ErrLayerTooLarge, rel, hdr.Size, u.max)
	}
	u.declared += hdr.Size
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	if _, err := u.clear(parent, base, rel, false); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if err := u.copySparse(f, r, hdr.Size); err != nil {
		return err
	}
	if err := u.chown(fd, "", hdr, 0); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: rel, Err: err}
	}
	if err := u.xattrs(fd, hdr); err != nil {
		return err
	}
	return u.times(fd, "", hdr, unix.AT_EMPTY_PATH)
}

// copySparse copies size bytes of r to f, leaving holes where whole blocks
// are zero: a sparse file in the tar, or a bomb of zeros, stays small on
// disk.
func (u *unpacker) copySparse(f *os.File, r io.Reader, size int64) error {
	var off int64
	for off < size {
		n := int(min(int64(len(u.buf)), size-off))
		b := u.buf[:n]
		if _, err := io.ReadFull(r, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading tar: %w", err)
		}
		if !isZero(b) {
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	return f.Truncate(size)
}

func (u *unpacker) directory(hdr *tar.Header, dir, base, rel string) error {
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	wasWhiteout, err := u.clear(parent, base, rel, true)
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(parent, base, 0o700); err != nil && err != unix.EEXIST {
		return &os.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	u.addDir(rel, u.metaOf(hdr))
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	defer unix.Close(fd)
	if wasWhiteout {
		// The layers below had something here, which the whiteout hid.
		if err := u.setOpaque(fd); err != nil {
			return err
		}
	}
	return u.xattrs(fd, hdr)
}

func (u *unpacker) symlink(hdr *tar.Header, dir, base, rel string) error {
	if hdr.Linkname == "" {
		return fmt.Errorf("symbolic link with no target")
	}
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	if _, err := u.clear(parent, base, rel, false); err != nil {
		return err
	}
	// A link's target is only text here: it is resolved inside the
	// sandbox, whose root is the image.
	if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
		return &os.PathError{Op: "symlink", Path: rel, Err: err}
	}
	if err := u.chown(parent, base, hdr, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	return u.times(parent, base, hdr, unix.AT_SYMLINK_NOFOLLOW)
}

func (u *unpacker) hardlink(hdr *tar.Header, dir, base, rel string) error {
	target, err := cleanPath(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	if target == "" {
		return fmt.Errorf("hard link to the layer's root")
	}
	tdir, tbase := path.Split(target)
	tdir = strings.TrimSuffix(tdir, "/")
	tfd := u.root
	if tdir != "" {
		if tfd, err = u.openDir(tdir, false); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link to %q, which is not in the layer: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link to directory %q", hdr.Linkname)
	}
	if target == rel {
		return nil
	}
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	if _, err := u.clear(parent, base, rel, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, parent, base, 0); err != nil {
		return &os.PathError{Op: "link", Path: rel, Err: err}
	}
	return nil
}

func (u *unpacker) node(hdr *tar.Header, dir, base, rel string) error {
	parent, err := u.parent(dir, true)
	if err != nil {
		return err
	}
	if _, err := u.clear(parent, base, rel, false); err != nil {
		return err
	}
	mode := uint32(hdr.Mode) & 0o7777
	dev := 0
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
		dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
		dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	default:
		mode |= unix.S_IFIFO
	}
	if err := unix.Mknodat(parent, base, mode, dev); err != nil {
		if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo {
			return nil // no CAP_MKNOD: device nodes are skipped
		}
		return &os.PathError{Op: "mknod", Path: rel, Err: err}
	}
	if err := u.chown(parent, base, hdr, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := unix.Fchmodat(parent, base, mode&0o7777, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: rel, Err: err}
	}
	return u.times(parent, base, hdr, unix.AT_SYMLINK_NOFOLLOW)
}

// chown gives an entry the tar's owner, as root. Without root the files
// keep the caller as owner, which the sandbox's user namespace shows as
// root.
func (u *unpacker) chown(fd int, name string, hdr *tar.Header, flags int) error {
	if !u.asRoot {
		return nil
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-2 || hdr.Gid > 1<<32-2 {
		return fmt.Errorf("bad owner %d:%d", hdr.Uid, hdr.Gid)
	}
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(fd, name, hdr.Uid, hdr.Gid, flags); err != nil {
		return &os.PathError{Op: "chown", Path: hdr.Name, Err: err}
	}
	return nil
}

func (u *unpacker) times(fd int, name string, hdr *tar.Header, flags int) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return setTimes(fd, name, at, hdr.ModTime, flags)
}

func setTimes(fd int, name string, atime, mtime time.Time, flags int) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	err := unix.UtimesNanoAt(fd, name, ts, flags)
	if err == unix.EINVAL && name == "" {
		// Kernels before AT_EMPTY_PATH for utimensat.
		err = unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts, 0)
	}
	if err != nil && err != unix.EPERM {
		return &os.PathError{Op: "utimes", Path: name, Err: err}
	}
	return nil
}

// xattrs sets the extended attributes the tar records for an entry. The
// overlay.* ones are overlayfs's own and never taken from a tar: a layer
// could otherwise redirect lookups elsewhere. Without root only user.*
// ones can be set; others are skipped, as are ones the file system
// refuses.
func (u *unpacker) xattrs(fd int, hdr *tar.Header) error {
	keys := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		if !u.asRoot && !strings.HasPrefix(name, "user.") {
			continue
		}
		err := unix.Fsetxattr(fd, name, []byte(hdr.PAXRecords[k]), 0)
		switch err {
		case nil, unix.ENOTSUP, unix.EPERM, unix.EACCES, unix.EINVAL, unix.ERANGE:
		default:
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	return nil
}

// finish gives directories their mode, owner and times, deepest first.
func (u *unpacker) finish() error {
	u.dropCache()
	for i := len(u.dirOrder) - 1; i >= 0; i-- {
		rel := u.dirOrder[i]
		m, ok := u.dirs[rel]
		if !ok {
			continue // replaced by a later entry
		}
		fd := u.root
		if rel != "" {
			var err error
			if fd, err = u.openDir(rel, false); err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
					continue
				}
				return err
			}
		}
		err := u.finishDir(fd, rel, m)
		if fd != u.root {
			unix.Close(fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (u *unpacker) finishDir(fd int, rel string, m *dirMeta) error {
	if u.asRoot && m.owner {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return &os.PathError{Op: "chown", Path: rel, Err: err}
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return &os.PathError{Op: "chmod", Path: rel, Err: err}
	}
	if m.times {
		return setTimes(fd, "", m.atime, m.mtime, unix.AT_EMPTY_PATH)
	}
	return nil
}
