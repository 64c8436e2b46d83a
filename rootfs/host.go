package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hutchbox/hutch/internal/state"
)

// Host returns the default image: the host's own programs and libraries
// under a small generated /etc, enough to run what is installed on the host
// (a compiler, an interpreter) with none of the host's configuration,
// secrets or data.
//
// It presents the host's /usr, /bin, /sbin, /lib, /lib32, /lib64 and
// /libx32, those that exist, read-only. On a merged-/usr host, where /bin is
// a symbolic link to usr/bin, the image has the same link; where /bin is a
// directory of its own, the image binds it. /usr is always a bind.
//
// Its single layer is a skeleton directory that hutch generates under the
// state directory (internal/state) the first time Resolve is called in a
// process, and reuses after that, also from other processes:
//
//	bin -> usr/bin, lib -> usr/lib, ...  links as on the host,
//	bin/, lib/, ...                      or empty directories for binds
//	usr/                                 empty, for the bind of /usr
//	dev/ proc/ home/ run/ var/ etc/      empty directories
//	tmp/ var/tmp/                        mode 1777
//	root/                                mode 0700
//	etc/passwd, etc/group                root and nobody
//	etc/hosts                            localhost
//	etc/resolv.conf                      no nameserver: a sandbox has no network
//	etc/nsswitch.conf                    files, and dns for hosts
//	etc/ld.so.cache                      a copy of the host's, if it has one
//	etc/alternatives/                    a copy of the host's links, if any
//	                                     (Debian's cc, awk, python3, ...)
//
// Nothing else of the host's /etc is present. The skeleton is built from a
// snapshot of the host taken then: a process that runs for long does not
// see a later change to the host's ld.so.cache or alternatives, nor a
// directory such as /lib32 that appears later. A skeleton removed while the
// process runs is made again by the next Resolve.
//
// The skeleton's name holds a hash of its content, so a process that sees a
// different host (a new ld.so.cache after installing a library, say) makes a
// new one beside the old. Old skeletons are not removed, since another
// process may have a sandbox running on one; they are small, and the state
// directory normally lives on a tmpfs that a reboot empties.
func Host() Image { return hostImage{root: "/"} }

// hostDirs are the top-level directories of the host that [Host] presents,
// in the order of their binds. "usr" must come first.
var hostDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// skeletonVersion names the layout of the skeleton. Change it when the code
// that writes a skeleton changes, so that a new hutch does not reuse one
// that an older hutch wrote.
const skeletonVersion = "hutch host skeleton 1"

// hostImage is [Host] over the host tree at root, "/" but in tests.
type hostImage struct{ root string }

func (h hostImage) String() string {
	if h.root == "/" {
		return "rootfs.Host()"
	}
	return fmt.Sprintf("rootfs.Host() of %q", h.root)
}

// hostSpecs caches the resolved specs of host images, by host root and
// state directory, for the life of the process.
var hostSpecs struct {
	mu    sync.Mutex
	specs map[[2]string]*Spec
}

// Resolve returns the spec of the host image, building its skeleton on the
// first call. A failed call is retried by the next one.
func (h hostImage) Resolve() (*Spec, error) {
	key := [2]string{h.root, state.Dir()}
	hostSpecs.mu.Lock()
	defer hostSpecs.mu.Unlock()
	if spec, ok := hostSpecs.specs[key]; ok {
		// Cheap insurance against a cleaner of old files in /tmp: make a
		// new skeleton if this one is gone.
		if _, err := os.Lstat(spec.Layers[0]); err == nil {
			return cloneSpec(spec), nil
		}
	}
	spec, err := h.resolve()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", h, err)
	}
	if hostSpecs.specs == nil {
		hostSpecs.specs = make(map[[2]string]*Spec)
	}
	hostSpecs.specs[key] = spec
	return cloneSpec(spec), nil
}

func (h hostImage) resolve() (*Spec, error) {
	sk, binds, err := h.plan()
	if err != nil {
		return nil, err
	}
	images, err := state.Ensure("images")
	if err != nil {
		return nil, err
	}
	dir, err := sk.materialize(images)
	if err != nil {
		return nil, err
	}
	return &Spec{Layers: []string{dir}, Binds: binds}, nil
}

func cloneSpec(s *Spec) *Spec {
	return &Spec{
		Layers: append([]string(nil), s.Layers...),
		Binds:  append([]Bind(nil), s.Binds...),
	}
}

// skeleton is the content of a skeleton directory: its entries, each after
// its parent.
type skeleton []skelEntry

type skelEntry struct {
	name   string      // slash-separated, relative to the skeleton's root
	mode   fs.FileMode // type and permission bits
	target string      // of a symbolic link
	data   []byte      // of a regular file
}

func (s *skeleton) dir(name string, perm fs.FileMode) {
	*s = append(*s, skelEntry{name: name, mode: fs.ModeDir | perm})
}

func (s *skeleton) symlink(name, target string) {
	*s = append(*s, skelEntry{name: name, mode: fs.ModeSymlink | 0o777, target: target})
}

func (s *skeleton) file(name string, data []byte) {
	*s = append(*s, skelEntry{name: name, mode: 0o644, data: data})
}

// Files of the generated /etc.
const (
	etcPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	etcGroup = "root:x:0:\n" +
		"nogroup:x:65534:\n"
	etcHosts = "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n"
	etcResolvConf = "# hutch: a sandbox has no network, so no nameserver.\n"
	etcNsswitch   = "passwd: files\n" +
		"group: files\n" +
		"shadow: files\n" +
		"hosts: files dns\n"
)

// plan looks at the host and returns the skeleton of its image and the binds
// that go with it.
func (h hostImage) plan() (skeleton, []Bind, error) {
	var sk skeleton
	var binds []Bind

	// usr first: the links of a merged-/usr host are checked against it.
	usr, err := filepath.EvalSymlinks(filepath.Join(h.root, "usr"))
	switch {
	case err == nil && isDir(usr):
		binds = append(binds, Bind{Source: usr, Target: "/usr"})
	case err == nil || errors.Is(err, fs.ErrNotExist):
		usr = "" // not a directory: nothing to bind
	default:
		return nil, nil, err
	}
	sk.dir("usr", 0o755)

	for _, name := range hostDirs[1:] {
		path := filepath.Join(h.root, name)
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, nil, err
		}
		real, err := filepath.EvalSymlinks(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a dangling link
		} else if err != nil {
			return nil, nil, err
		}
		if !isDir(real) {
			continue
		}
		// A link that leads into /usr works the same in the sandbox, where
		// /usr is the host's: copy it. A directory, or a link that leads
		// elsewhere, needs a bind, and an empty directory to bind onto.
		if fi.Mode()&fs.ModeSymlink != 0 && usr != "" && within(real, usr) {
			target, err := os.Readlink(path)
			if err != nil {
				return nil, nil, err
			}
			sk.symlink(name, target)
			continue
		}
		sk.dir(name, 0o755)
		binds = append(binds, Bind{Source: real, Target: "/" + name})
	}

	for _, name := range []string{"dev", "proc", "home", "run", "var"} {
		sk.dir(name, 0o755)
	}
	sk.dir("tmp", fs.ModeSticky|0o777)
	sk.dir("var/tmp", fs.ModeSticky|0o777)
	sk.dir("root", 0o700)

	sk.dir("etc", 0o755)
	sk.file("etc/passwd", []byte(etcPasswd))
	sk.file("etc/group", []byte(etcGroup))
	sk.file("etc/hosts", []byte(etcHosts))
	sk.file("etc/resolv.conf", []byte(etcResolvConf))
	sk.file("etc/nsswitch.conf", []byte(etcNsswitch))

	// The dynamic loader finds libraries outside its default directories
	// (those of ld.so.conf.d) through the cache alone.
	cache := filepath.Join(h.root, "etc/ld.so.cache")
	if fi, err := os.Stat(cache); err == nil && fi.Mode().IsRegular() {
		data, err := os.ReadFile(cache)
		if err != nil {
			return nil, nil, err
		}
		sk.file("etc/ld.so.cache", data)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}

	// Debian's alternatives: /usr/bin/cc -> /etc/alternatives/cc ->
	// /usr/bin/gcc-12. Copying the links keeps them working without
	// showing anything else of the host's /etc.
	alts := filepath.Join(h.root, "etc/alternatives")
	entries, err := os.ReadDir(alts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotDir) {
		return nil, nil, err
	}
	if err == nil {
		sk.dir("etc/alternatives", 0o755)
		for _, e := range entries { // sorted by name
			if e.Type()&fs.ModeSymlink == 0 {
				continue // such as Debian's README
			}
			target, err := os.Readlink(filepath.Join(alts, e.Name()))
			if err != nil {
				return nil, nil, err
			}
			sk.symlink("etc/alternatives/"+e.Name(), target)
		}
	}
	return sk, binds, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// within reports whether path is dir or below it; both are clean.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel)
}

// hash returns a short hash of the skeleton's content.
func (sk skeleton) hash() string {
	h := sha256.New()
	io.WriteString(h, skeletonVersion+"\n")
	for _, e := range sk {
		fmt.Fprintf(h, "%q %o %q %d\n", e.name, uint32(e.mode), e.target, len(e.data))
		h.Write(e.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// skeletonPrefix and tempPrefix begin the names of skeleton directories and
// of those being built.
const (
	skeletonPrefix = "host-"
	tempPrefix     = ".tmp-host-"
)

// staleTemp is the age after which a temporary directory is taken to be the
// leftover of a process that died while building a skeleton.
const staleTemp = time.Hour

// testHookBeforeRename, when set, is called before a built skeleton is
// renamed into place.
var testHookBeforeRename func(final string)

// materialize returns the path of the skeleton's directory in images,
// building it if no process has done so yet.
//
// It builds the directory under a temporary name next to its final one and
// renames it into place, so that no process ever sees a skeleton half
// built. When another process wins the race, its directory is used and this
// one removed.
func (sk skeleton) materialize(images string) (string, error) {
	final := filepath.Join(images, skeletonPrefix+sk.hash())
	if fi, err := os.Lstat(final); err == nil {
		if !fi.IsDir() {
			return "", &fs.PathError{Op: "open", Path: final, Err: errNotDir}
		}
		return final, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}

	removeStaleTemps(images)
	tmp, err := os.MkdirTemp(images, tempPrefix+sk.hash()+"-")
	if err != nil {
		return "", err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := sk.write(tmp); err != nil {
		return "", err
	}
	if testHookBeforeRename != nil {
		testHookBeforeRename(final)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Renaming a directory onto a directory that is not empty fails
		// (ENOTEMPTY or EEXIST): another process was faster.
		if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
			return final, nil
		}
		return "", err
	}
	done = true
	syncDir(images)
	return final, nil
}

// write writes the skeleton into the empty directory root, and flushes it
// to disk in case the state directory is on one: after a crash, a skeleton
// must be whole or absent.
func (sk skeleton) write(root string) error {
	dirs := []string{root}
	for _, e := range sk {
		path := filepath.Join(root, filepath.FromSlash(e.name))
		switch {
		case e.mode.IsDir():
			if err := os.Mkdir(path, e.mode.Perm()); err != nil {
				return err
			}
			dirs = append(dirs, path)
		case e.mode&fs.ModeSymlink != 0:
			if err := os.Symlink(e.target, path); err != nil {
				return err
			}
		default:
			if err := writeFile(path, e.data, e.mode); err != nil {
				return err
			}
		}
	}
	// Set the modes last, after the umask filtered those of Mkdir, and so
	// that root's 0700 does not stand in the way while writing.
	for _, e := range sk {
		if e.mode&fs.ModeSymlink == 0 {
			if err := os.Chmod(filepath.Join(root, filepath.FromSlash(e.name)), e.mode&(fs.ModePerm|fs.ModeSticky)); err != nil {
				return err
			}
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, d := range dirs {
		syncDir(d)
	}
	return nil
}

func writeFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
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
	return err
}

// syncDir flushes a directory's entries to disk, as far as the system
// allows: some file systems and systems cannot sync a directory, and that
// is no reason to fail.
func syncDir(path string) {
	if f, err := os.Open(path); err == nil {
		f.Sync()
		f.Close()
	}
}

// removeStaleTemps removes what processes that died while building a
// skeleton left in images. Skeletons themselves are never removed: a
// sandbox of another process may be using one.
func removeStaleTemps(images string) {
	entries, err := os.ReadDir(images)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
			os.RemoveAll(filepath.Join(images, e.Name()))
		}
	}
}
