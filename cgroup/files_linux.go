package cgroup

import (
	"bytes"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The helpers below read and write cgroup files with plain open, read or
// write, and close, into caller-supplied buffers: the os package would add an
// *os.File, its finalizer and a growing buffer to every read, and the files
// are small seq_files that the kernel produces whole on the first read.

// readFile reads the file at path into buf, at most len(buf) bytes, and
// returns how many it read.
func readFile(path string, buf []byte) (int, error) {
	fd, err := open(path, unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return readAt0(fd, path, buf)
}

// readAt0 reads the open file fd (path) from its start into buf, at most
// len(buf) bytes. A seq_file produces its content anew for a read at
// offset 0, so a file kept open reads what it says now; and it fills as
// much of a read as it has, so a short read is the end of the file, no
// second read needed to see it.
func readAt0(fd int, path string, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		n += m
		if m < len(buf)-(n-m) {
			break
		}
	}
	return n, nil
}

// writeFile writes data to the file at path in one write, which is how the
// kernel wants a cgroup setting.
func writeFile(path string, data []byte) error {
	fd, err := open(path, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, data)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func open(path string, mode int) (int, error) {
	dirfd, rel := at(path)
	for {
		fd, err := unix.Openat(dirfd, rel, mode|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// at resolves path, absolute, for a *at system call: below the root of a
// hierarchy, relative to a descriptor of that root that the process keeps
// open. A walk from /, through sysfs and the cgroup file system, leaves
// the kernel's lockless path walk (kernfs checks permissions and
// revalidates names under its lock, which groups being made and removed
// hold too): each component skipped is a lock taken less. Other paths,
// or when the root cannot be opened, resolve as they are.
func at(path string) (dirfd int, rel string) {
	s := detected()
	for i, r := range s.roots {
		if len(path) > len(r)+1 && path[len(r)] == '/' && path[:len(r)] == r {
			if fd := s.rootFD(i); fd >= 0 {
				return fd, path[len(r)+1:]
			}
			break
		}
	}
	return unix.AT_FDCWD, path
}

// rootFD is a descriptor (O_PATH) of s.roots[i], opened on first use and
// kept for the process's life; -1 if it cannot be opened.
func (s *system) rootFD(i int) int {
	s.rootFDsOnce.Do(func() {
		s.rootFDs = make([]int, len(s.roots))
		for j, r := range s.roots {
			fd, err := unix.Open(r, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				fd = -1
			}
			s.rootFDs[j] = fd
		}
	})
	return s.rootFDs[i]
}

// mkdir makes the directory path (see at).
func mkdir(path string, mode uint32) error {
	dirfd, rel := at(path)
	return unix.Mkdirat(dirfd, rel, mode)
}

// rmdir removes the directory path (see at).
func rmdir(path string) error {
	dirfd, rel := at(path)
	return unix.Unlinkat(dirfd, rel, unix.AT_REMOVEDIR)
}

// openFile is open for a file the caller keeps: os.OpenFile would try,
// and fail, to put a cgroup file or directory in the runtime's poller,
// four system calls more.
func openFile(path string, mode int) (*os.File, error) {
	fd, err := open(path, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// writeInt writes v in decimal to the file at path.
func writeInt(path string, v int64) error {
	var buf [24]byte
	return writeFile(path, strconv.AppendInt(buf[:0], v, 10))
}

// readInt reads a file that holds one decimal number.
func readInt(path string) (int64, error) {
	var buf [32]byte
	n, err := readFile(path, buf[:])
	if err != nil {
		return 0, err
	}
	return parseInt(path, buf[:n])
}

// parseInt parses the content of a file (path) that holds one decimal
// number.
func parseInt(path string, data []byte) (int64, error) {
	v, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	if err != nil {
		return 0, &fs.PathError{Op: "parse", Path: path, Err: err}
	}
	return v, nil
}

// readKeys reads a file of "key value" lines (cpu.stat, memory.events,
// memory.oom_control, cgroup.events) and stores the value of each of keys
// that it holds in the matching element of vals, reporting which it found in
// the bits of found. The first 512 bytes are enough for the keys read here.
func readKeys(path string, keys []string, vals []int64) (found uint, err error) {
	var buf [512]byte
	n, err := readFile(path, buf[:])
	if err != nil {
		return 0, err
	}
	return parseKeys(path, buf[:n], keys, vals)
}

// parseKeys is readKeys for the content of a file (path) read already.
func parseKeys(path string, data []byte, keys []string, vals []int64) (found uint, err error) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		for i, key := range keys {
			if string(k) == key {
				x, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					return found, &fs.PathError{Op: "parse", Path: path, Err: err}
				}
				vals[i] = x
				found |= 1 << i
			}
		}
	}
	return found, nil
}

// readPids returns the pids listed in a cgroup.procs file, appended to pids.
func readPids(path string, pids []int) ([]int, error) {
	var buf [4096]byte
	fd, err := open(path, unix.O_RDONLY)
	if err != nil {
		return pids, err
	}
	defer unix.Close(fd)
	var partial []byte // a number split between two reads
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return pids, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		data := append(partial, buf[:n]...)
		end := bytes.LastIndexByte(data, '\n') + 1
		for _, f := range bytes.Fields(data[:end]) {
			pid, err := strconv.Atoi(string(f))
			if err != nil {
				return pids, &fs.PathError{Op: "parse", Path: path, Err: err}
			}
			pids = append(pids, pid)
		}
		partial = append(partial[:0], data[end:]...)
	}
	return pids, nil
}
