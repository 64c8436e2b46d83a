package rootfs

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockPath takes a flock(2) lock (unix.LOCK_SH or unix.LOCK_EX) on the
// file path, creating it if needed, and waits for it until ctx is done.
// The lock is held until the returned file is closed.
//
// The garbage collector unlinks the lock files of the layers it removes;
// a lock taken on a file that was unlinked meanwhile protects nothing, so
// lockPath checks that path still names the locked file, and starts over
// if not.
func lockPath(ctx context.Context, path string, how int) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, ok, err := tryLockPath(path, how)
		if err != nil {
			return nil, err
		}
		if ok {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// tryLockPath is lockPath without waiting: ok is false when someone else
// holds a conflicting lock.
func tryLockPath(path string, how int) (f *os.File, ok bool, err error) {
	for {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, false, err
		}
		if err := flock(f, how|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, false, nil
			}
			return nil, false, &os.PathError{Op: "flock", Path: path, Err: err}
		}
		var held, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, false, &os.PathError{Op: "fstat", Path: path, Err: err}
		}
		if err := unix.Stat(path, &now); err == nil && now.Ino == held.Ino && now.Dev == held.Dev {
			return f, true, nil
		}
		f.Close()
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
