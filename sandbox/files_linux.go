package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The file methods work on the sandbox's root filesystem as its commands
// see it (writes land in its writable layer). Every path is resolved inside
// that root with openat2's RESOLVE_IN_ROOT: a symbolic link in the sandbox,
// whatever it points to, cannot send a read or a write to the host. Files
// are written as the caller (root of the sandbox, for a root caller), with
// the modes given.

// resolve opens name (an absolute path inside the sandbox) with flags.
func (sb *Sandbox) resolve(name string, flags int, mode uint32) (int, error) {
	sb.mu.Lock()
	closed := sb.closed
	sb.mu.Unlock()
	if closed {
		return -1, ErrClosed
	}
	if !path.IsAbs(name) {
		return -1, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	rel := strings.TrimPrefix(path.Clean(name), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(sb.rootFd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// mkdirAll makes dir and its parents inside the sandbox.
func (sb *Sandbox) mkdirAll(dir string, mode uint32) error {
	dir = path.Clean(dir)
	if dir == "/" {
		return nil
	}
	if fd, err := sb.resolve(dir, unix.O_PATH|unix.O_DIRECTORY, 0); err == nil {
		unix.Close(fd)
		return nil
	}
	if err := sb.mkdirAll(path.Dir(dir), 0o755); err != nil {
		return err
	}
	pfd, err := sb.resolve(path.Dir(dir), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, path.Base(dir), mode); err != nil && err != unix.EEXIST {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return nil
}

// createIn creates (or truncates) the file base in the directory dirFd,
// never following a link at base.
func createIn(dirFd int, base string, perm fs.FileMode) (*os.File, error) {
	fd, err := unix.Openat(dirFd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), base)
	// O_CREAT's mode went through the umask; set what was asked for.
	if err := f.Chmod(perm.Perm() | perm&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// WriteFile writes data to the file name inside the sandbox, creating it
// (and its missing parent directories) or truncating it.
func (sb *Sandbox) WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := sb.mkdirAll(path.Dir(path.Clean(name)), 0o755); err != nil {
		return err
	}
	dfd, err := sb.resolve(path.Dir(path.Clean(name)), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	f, err := createIn(dfd, path.Base(name), perm)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadFile reads the file name inside the sandbox.
func (sb *Sandbox) ReadFile(name string) ([]byte, error) {
	fd, err := sb.resolve(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
}

// CopyIn copies the host file or directory tree src to dst inside the
// sandbox (dst is the copy's own path; missing parents are made). Regular
// files, directories and symbolic links are copied with their modes; other
// files are skipped.
func (sb *Sandbox) CopyIn(src, dst string) error {
	if !path.IsAbs(dst) {
		return &fs.PathError{Op: "copy in", Path: dst, Err: fs.ErrInvalid}
	}
	dst = path.Clean(dst)
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := sb.mkdirAll(path.Dir(target), 0o755); err != nil {
			return err
		}
		dfd, err := sb.resolve(path.Dir(target), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		base := path.Base(target)
		switch {
		case info.IsDir():
			if err := unix.Mkdirat(dfd, base, uint32(info.Mode().Perm())); err != nil && err != unix.EEXIST {
				return &fs.PathError{Op: "mkdir", Path: target, Err: err}
			}
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			unix.Unlinkat(dfd, base, 0)
			if err := unix.Symlinkat(link, dfd, base); err != nil {
				return &fs.PathError{Op: "symlink", Path: target, Err: err}
			}
		case info.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := createIn(dfd, base, info.Mode())
			if err != nil {
				return &fs.PathError{Op: "open", Path: target, Err: err}
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}

// CopyOut copies the file or directory tree src inside the sandbox to dst
// on the host (dst is the copy's own path). Regular files, directories and
// symbolic links are copied with their modes, links as links (never
// followed); other files are skipped.
func (sb *Sandbox) CopyOut(src, dst string) error {
	fd, err := sb.resolve(src, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return copyOutAt(fd, src, dst)
}

// copyOutAt copies the file open as fd (an O_PATH descriptor, not
// followed) to dst.
func copyOutAt(fd int, name, dst string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, "", &st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	mode := fs.FileMode(st.Mode & 0o7777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, mode.Perm()|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: name, Err: err}
		}
		dir := os.NewFile(uintptr(dfd), name)
		defer dir.Close()
		names, err := dir.Readdirnames(-1)
		if err != nil {
			return err
		}
		for _, n := range names {
			cfd, err := unix.Openat(dfd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return &fs.PathError{Op: "open", Path: path.Join(name, n), Err: err}
			}
			err = copyOutAt(cfd, path.Join(name, n), filepath.Join(dst, n))
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
		return os.Chmod(dst, mode.Perm())
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return &fs.PathError{Op: "readlink", Path: name, Err: err}
		}
		return os.Symlink(string(buf[:n]), dst)
	case unix.S_IFREG:
		rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			// "." of a file: reopen through the descriptor's own link.
			rfd, err = unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return &fs.PathError{Op: "open", Path: name, Err: err}
			}
		}
		in := os.NewFile(uintptr(rfd), name)
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return nil
}
