package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// busybox returns a fresh busybox image, or skips when the machine cannot
// sandbox at all.
func busybox(t *testing.T) (rootfs.Image, string) {
	t.Helper()
	root := testenv.BusyboxRoot(t)
	img := rootfs.Dir(root)
	requireSandbox(t, img)
	return img, root
}

var (
	probeOnce sync.Once
	probeErr  error
)

// requireSandbox skips the test when a trivial sandbox cannot start here,
// naming what failed.
func requireSandbox(t *testing.T, img rootfs.Image) {
	t.Helper()
	probeOnce.Do(func() {
		_, probeErr = sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{})
	})
	// Only a refused clone means the machine cannot sandbox; any other
	// failure is hutch's and fails the test.
	var se *sandbox.SetupError
	if errors.As(probeErr, &se) && se.Stage == "clone" && (errors.Is(se.Err, syscall.EPERM) || errors.Is(se.Err, syscall.EACCES) || errors.Is(se.Err, syscall.ENOSYS) || errors.Is(se.Err, syscall.EINVAL)) {
		t.Skipf("this machine cannot create a sandbox: %v", probeErr)
	}
	require.NoError(t, probeErr, "probe run")
}

func run(t *testing.T, c *sandbox.Cmd) *sandbox.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Run(ctx)
	require.NoError(t, err)
	return res
}

func sh(t *testing.T, img rootfs.Image, script string) *sandbox.Result {
	t.Helper()
	return run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", script}, Limits: sandbox.Limits{WallTime: 20 * time.Second}})
}

func TestIsolation(t *testing.T) {
	img, _ := busybox(t)
	tests := []struct {
		name, script, want string
	}{
		{"command is not pid 1", "echo $$", "2\n"},
		{"init is pid 1 and only our processes are visible", "ps -o pid | tail -n +2 | awk '$1>20{b=1} $1==1{one=1} END{print one, b+0}'", "1 0\n"},
		{"default hostname", "hostname", "hutch\n"},
		{"only lo, and it is up", "ls /sys/class/net 2>/dev/null; grep -c : /proc/net/dev; ip -o link | awk '{print $2, $3}'", "1\nlo: <LOOPBACK,UP,LOWER_UP>\n"},
		{"loopback works", "nc -l -p 7000 -e echo pong & sleep 0.2; echo ping | nc 127.0.0.1 7000", "pong\n"},
		{"no network address but lo", "ip -o addr | awk '{print $2}' | sort -u", "lo\n"},
		{"clean environment", "env | sort", "PATH=" + sandbox.DefaultPath + "\nPWD=/\nSHLVL=1\n"},
		{"devices", "echo -n x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c && ls /dev/pts/ptmx /dev/fd/0 /dev/shm >/dev/null && echo ok", "4\n8\nok\n"},
		{"device numbers", "stat -c %F,%t,%T /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty",
			"character special file,1,3\ncharacter special file,1,5\ncharacter special file,1,7\n" +
				"character special file,1,8\ncharacter special file,1,9\ncharacter special file,5,0\n"},
		{"/dev/full is full", "echo x > /dev/full 2>/dev/null || echo refused", "refused\n"},
		{"tmp is writable and sticky", "stat -c %A /tmp && echo hi > /tmp/x && cat /tmp/x", "drwxrwxrwt\nhi\n"},
		{"proc is the namespace's", "test $(cut -d' ' -f1 /proc/self/stat) -lt 10 && test -d /proc/1 && echo ok", "ok\n"},
		{"init shows nothing of the caller's command line", "tr -d '\\0' < /proc/1/cmdline | wc -c", "0\n"},
		{"the command is the OOM killer's first choice", "cat /proc/self/oom_score_adj", "1000\n"},
		{"no old root left", "ls -a / | grep -c hutch-old", "0\n"},
		{"root is nosuid and nodev", "grep ' / / ' /proc/self/mountinfo | grep -c nosuid,nodev", "1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sh(t, img, tt.script)
			assert.Equal(t, tt.want, string(res.Stdout), "stderr: %s", res.Stderr)
		})
	}
}

func TestHostnameSettable(t *testing.T) {
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"hostname"}, Hostname: "judge-7"})
	assert.Equal(t, "judge-7\n", string(res.Stdout))
}

func TestWritesDoNotReachTheImage(t *testing.T) {
	img, root := busybox(t)
	before := treeListing(t, root)
	// As root of the sandbox (without capabilities), which owns the image's
	// files; the default user, nobody, could not write there at all.
	root0 := &sandbox.Credential{}
	res := run(t, &sandbox.Cmd{Image: img, Credential: root0, Args: []string{"sh", "-c",
		"echo new > /new && echo changed > /etc/passwd && rm /bin/ls && mkdir /d && cat /new /etc/passwd && ls /bin/ls 2>/dev/null; echo done"}})
	assert.Equal(t, "new\nchanged\ndone\n", string(res.Stdout))
	assert.Equal(t, before, treeListing(t, root), "the image directory changed")
	// A second run sees the image as it was.
	res = sh(t, img, "ls /new 2>&1; head -c 4 /etc/passwd; ls /bin/ls")
	assert.Contains(t, string(res.Stdout), "No such file")
	assert.Contains(t, string(res.Stdout), "root/bin/ls")
}

func treeListing(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %v\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	require.NoError(t, err)
	return b.String()
}

func TestExitAndSignals(t *testing.T) {
	img, _ := busybox(t)
	tests := []struct {
		name     string
		script   string
		status   sandbox.Status
		exitCode int
		signal   syscall.Signal
	}{
		{"ok", "true", sandbox.OK, 0, 0},
		{"exit code", "exit 3", sandbox.NonZeroExit, 3, 0},
		{"sigterm to itself", "kill -TERM $$", sandbox.Signaled, -1, syscall.SIGTERM},
		{"abort", "kill -ABRT $$", sandbox.Signaled, -1, syscall.SIGABRT},
		{"segv", "kill -SEGV $$", sandbox.Signaled, -1, syscall.SIGSEGV},
		{"killing init from inside fails", "kill -KILL 1; echo $?", sandbox.OK, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sh(t, img, tt.script)
			assert.Equal(t, tt.status, res.Status, "stderr: %s", res.Stderr)
			assert.Equal(t, tt.exitCode, res.ExitCode)
			assert.Equal(t, tt.signal, res.Signal)
		})
	}
}

func TestStdio(t *testing.T) {
	img, _ := busybox(t)
	t.Run("stdin from a reader", func(t *testing.T) {
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"tr", "a-z", "A-Z"}, Stdin: strings.NewReader("hello")})
		assert.Equal(t, "HELLO", string(res.Stdout))
	})
	t.Run("stdin from a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "in")
		require.NoError(t, os.WriteFile(f, []byte("from a file"), 0o644))
		in, err := os.Open(f)
		require.NoError(t, err)
		defer in.Close()
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"cat"}, Stdin: in})
		assert.Equal(t, "from a file", string(res.Stdout))
	})
	t.Run("streamed output", func(t *testing.T) {
		var out, errb bytes.Buffer
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: &out, Stderr: &errb})
		assert.Equal(t, "out\n", out.String())
		assert.Equal(t, "err\n", errb.String())
		assert.Empty(t, res.Stdout)
	})
	t.Run("big input and output", func(t *testing.T) {
		in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"cat"}, Stdin: bytes.NewReader(in)})
		assert.Equal(t, in, res.Stdout)
	})
	t.Run("env, dir", func(t *testing.T) {
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo $FOO; pwd"}, Env: []string{"FOO=bar"}, Dir: "/etc"})
		assert.Equal(t, "bar\n/etc\n", string(res.Stdout))
	})
}

func TestOutputLimit(t *testing.T) {
	img, _ := busybox(t)
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"yes"}, Limits: sandbox.Limits{Output: 1 << 20, WallTime: 20 * time.Second}})
	assert.Equal(t, sandbox.OutputLimit, res.Status)
	assert.Len(t, res.Stdout, 1<<20)
	assert.True(t, res.StdoutTruncated)
	assert.Equal(t, syscall.SIGKILL, res.Signal, "the whole sandbox is killed")
}

func TestWallTimeLimit(t *testing.T) {
	img, _ := busybox(t)
	start := time.Now()
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "sleep 100 & sleep 100"}, Limits: sandbox.Limits{WallTime: 300 * time.Millisecond}})
	assert.Equal(t, sandbox.WallTimeLimit, res.Status)
	assert.GreaterOrEqual(t, res.WallTime, 300*time.Millisecond)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestCancel(t *testing.T) {
	img, _ := busybox(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := sandbox.Run(ctx, img, []string{"sleep", "100"}, sandbox.Limits{})
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, res)
	assert.Equal(t, sandbox.Canceled, res.Status)
	assert.Less(t, time.Since(start), 5*time.Second)

	// An already canceled context starts nothing.
	_, err = sandbox.Run(ctx, img, []string{"true"}, sandbox.Limits{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestDiskLimit(t *testing.T) {
	img, _ := busybox(t)
	res := sh(t, img, "dd if=/dev/zero of=/tmp/big bs=64k count=64 2>&1 | tail -1; dd if=/dev/zero of=/big bs=64k count=64 2>&1 | tail -1")
	assert.Equal(t, sandbox.OK, res.Status)
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "dd if=/dev/zero of=/tmp/big bs=64k count=64"}, Limits: sandbox.Limits{Disk: 1 << 20}})
	assert.Equal(t, sandbox.NonZeroExit, res.Status)
	assert.Contains(t, string(res.Stderr), "No space left")
}

func TestSetupErrors(t *testing.T) {
	img, _ := busybox(t)
	_, err := sandbox.Run(context.Background(), img, []string{"no-such-command"}, sandbox.Limits{})
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "execve", se.Stage)
	assert.ErrorIs(t, err, fs.ErrNotExist)

	_, err = sandbox.Run(context.Background(), img, []string{"/etc/passwd"}, sandbox.Limits{})
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, fs.ErrPermission)

	_, err = (&sandbox.Cmd{Image: img, Args: []string{"true"}, Dir: "/no/such/dir"}).Run(context.Background())
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "chdir", se.Stage)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestBadArguments(t *testing.T) {
	img, _ := busybox(t)
	tests := []struct {
		name string
		cmd  sandbox.Cmd
		is   error
	}{
		{"empty command", sandbox.Cmd{Image: img}, fs.ErrInvalid},
		{"nil image", sandbox.Cmd{Args: []string{"true"}}, fs.ErrInvalid},
		{"negative wall time", sandbox.Cmd{Image: img, Args: []string{"true"}, Limits: sandbox.Limits{WallTime: -1}}, fs.ErrInvalid},
		{"negative output", sandbox.Cmd{Image: img, Args: []string{"true"}, Limits: sandbox.Limits{Output: -1}}, fs.ErrInvalid},
		{"tiny disk", sandbox.Cmd{Image: img, Args: []string{"true"}, Limits: sandbox.Limits{Disk: 10}}, fs.ErrInvalid},
		{"relative dir", sandbox.Cmd{Image: img, Args: []string{"true"}, Dir: "etc"}, fs.ErrInvalid},
		{"bad env", sandbox.Cmd{Image: img, Args: []string{"true"}, Env: []string{"NOEQUALS"}}, fs.ErrInvalid},
		{"bind onto /proc", sandbox.Cmd{Image: img, Args: []string{"true"}, Binds: []sandbox.Bind{{Source: "/etc", Target: "/proc/x"}}}, fs.ErrInvalid},
		{"bind of a missing source", sandbox.Cmd{Image: img, Args: []string{"true"}, Binds: []sandbox.Bind{{Source: "/no/such", Target: "/x"}}}, fs.ErrInvalid},
		{"missing image", sandbox.Cmd{Image: rootfs.Dir("/no/such/image"), Args: []string{"true"}}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.cmd.Run(context.Background())
			assert.Nil(t, res)
			assert.ErrorIs(t, err, tt.is)
		})
	}
}

func TestBinds(t *testing.T) {
	img, _ := busybox(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("host file"), 0o644))
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "cat /data/f; echo x > /data/g 2>/dev/null || echo read-only; cat /one"},
		Binds: []sandbox.Bind{{Source: dir, Target: "/data"}, {Source: filepath.Join(dir, "f"), Target: "/one"}}})
	assert.Equal(t, "host fileread-only\nhost file", string(res.Stdout))
	assert.NoFileExists(t, filepath.Join(dir, "g"))

	require.NoError(t, os.Chmod(dir, 0o777)) // the command runs as nobody
	res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo x > /deep/er/g"},
		Binds: []sandbox.Bind{{Source: dir, Target: "/deep/er", Writable: true}}})
	assert.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
	assert.FileExists(t, filepath.Join(dir, "g"))
}

func TestBindTargetSymlinkStaysInside(t *testing.T) {
	img, root := busybox(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "marker"), []byte("m"), 0o644))

	// A link in the image aimed at an absolute path: the bind lands on
	// that path inside the sandbox's root.
	require.NoError(t, os.Symlink("/etc", filepath.Join(root, "escape")))
	res := run(t, &sandbox.Cmd{Image: img, Args: []string{"ls", "/etc"}, Binds: []sandbox.Bind{{Source: src, Target: "/escape"}}})
	assert.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
	assert.Equal(t, "marker\n", string(res.Stdout))

	// A link aimed at a host path that the image lacks fails the run; it
	// never reaches the host's directory.
	hostDir := t.TempDir()
	require.NoError(t, os.Symlink(hostDir, filepath.Join(root, "host")))
	_, err := (&sandbox.Cmd{Image: img, Args: []string{"true"}, Binds: []sandbox.Bind{{Source: src, Target: "/host"}}}).Run(context.Background())
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	entries, err := os.ReadDir(hostDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the host directory was touched")
}

func TestConcurrentRuns(t *testing.T) {
	img, _ := busybox(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				want := fmt.Sprintf("%d-%d", g, i)
				res, err := sandbox.Run(context.Background(), img, []string{"echo", want}, sandbox.Limits{WallTime: 20 * time.Second})
				if err != nil {
					errs <- err
					return
				}
				if got := strings.TrimSpace(string(res.Stdout)); got != want || res.Status != sandbox.OK {
					errs <- fmt.Errorf("got %q (%v), want %q", got, res.Status, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
