package sandbox_test

import (
	"context"
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/sandbox"
)

func TestDefaultHardening(t *testing.T) {
	img, _ := busybox(t)
	res := sh(t, img, "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status | tr -s '\\t ' ' '")
	assert.Equal(t, "CapInh: 0000000000000000\nCapPrm: 0000000000000000\nCapEff: 0000000000000000\n"+
		"CapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n", string(res.Stdout))

	want := "65534:65534\n"
	if os.Geteuid() != 0 {
		want = "0:0\n" // root of the sandbox's user namespace: the caller outside
	}
	res = sh(t, img, "echo $(id -u):$(id -g)")
	assert.Equal(t, want, string(res.Stdout))

	// Masked and read-only parts of /proc.
	res = sh(t, img, "wc -c < /proc/kcore 2>/dev/null || echo none; cat /proc/timer_list | wc -c; "+
		"grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | grep -c ' ro,'; "+
		"echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo written || echo refused")
	assert.Regexp(t, `^(0|none)\n0\n[1-4]\nrefused\n$`, string(res.Stdout))
}

func TestCredential(t *testing.T) {
	img, _ := busybox(t)
	c := &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo $(id -u):$(id -g):$(id -G)"},
		Credential: &sandbox.Credential{UID: 1000, GID: 100, Groups: []uint32{100, 5}}}
	if os.Geteuid() != 0 {
		_, err := c.Run(context.Background())
		require.ErrorIs(t, err, fs.ErrInvalid, "only 0:0 is mapped without root")
		return
	}
	res := run(t, c)
	assert.Equal(t, "1000:100:100 5\n", string(res.Stdout))
}

func TestSyscallFilter(t *testing.T) {
	img, _ := busybox(t)
	status := "grep '^Seccomp:' /proc/self/status | tr -d '\\t '"
	tests := []struct {
		name   string
		filter *sandbox.SyscallFilter
		script string
		want   string
	}{
		{"deny more", &sandbox.SyscallFilter{Deny: []string{"mkdir", "mkdirat"}}, "mkdir /tmp/x 2>&1; echo $?", "mkdir: can't create directory '/tmp/x': Operation not permitted\n1\n"},
		{"disable", &sandbox.SyscallFilter{Disable: true}, status, "Seccomp:0\n"},
		{"default", nil, status, "Seccomp:2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", tt.script}, Syscalls: tt.filter})
			assert.Equal(t, tt.want, string(res.Stdout), "stderr: %s", res.Stderr)
		})
	}
	t.Run("replace", func(t *testing.T) {
		// Exactly what busybox sh needs to print its pid, and nothing else.
		needs := []string{"execve", "exit_group", "write", "mprotect", "brk", "rt_sigaction", "getpid", "uname",
			"readlink", "getuid", "getppid", "prctl", "arch_prctl", "set_tid_address", "newfstatat",
			"set_robust_list", "prlimit64", "getrandom", "rseq"}
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo $$"},
			Syscalls: &sandbox.SyscallFilter{Replace: needs}})
		assert.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		assert.Equal(t, "2\n", string(res.Stdout))
		// Without getpid it fails.
		res = run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "echo $$"},
			Syscalls: &sandbox.SyscallFilter{Replace: needs, Deny: []string{"getpid"}}})
		assert.NotEqual(t, "2\n", string(res.Stdout))
	})
	t.Run("unknown syscall", func(t *testing.T) {
		_, err := (&sandbox.Cmd{Image: img, Args: []string{"true"}, Syscalls: &sandbox.SyscallFilter{Allow: []string{"no_such_call"}}}).Run(context.Background())
		var ce *sandbox.ConfigError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, "Syscalls", ce.Field)
	})
}

func TestImageWithProcSymlinkRefused(t *testing.T) {
	img, root := busybox(t)
	require.NoError(t, os.Remove(root+"/proc"))
	require.NoError(t, os.Symlink("/etc", root+"/proc"))
	_, err := sandbox.Run(context.Background(), img, []string{"true"}, sandbox.Limits{})
	var se *sandbox.SetupError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "check /proc", se.Stage)

	// A long-lived sandbox refuses it too, and leaves its writable layer
	// as it found it.
	layer := t.TempDir()
	_, err = sandbox.New(context.Background(), img, &sandbox.Config{WritableLayer: layer})
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "check /proc", se.Stage)
	entries, err := os.ReadDir(layer)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
