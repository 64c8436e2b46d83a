package forkexec

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// shareChildEnv makes TestShareCallerMemory's re-executed test binary
// run sharedCallerChecks: ShareCallerMemory is for the life of a process.
const shareChildEnv = "HUTCH_TEST_SHARE_CALLER"

// A process that shares its memory with its inits (ShareCallerMemory)
// blanks its command line for them and takes the commands' OOM score; an
// init of a new PID namespace then shares its memory, on memory of its own
// that is unmapped once it is reaped, and runs its command as one with a
// copy does. Inits that must not share it get a copy.
func TestShareCallerMemory(t *testing.T) {
	requireSharedInits(t)
	if os.Getenv(shareChildEnv) == "1" {
		sharedCallerChecks(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestShareCallerMemory$", "-test.v", "--", "secret-argument")
	cmd.Env = append(os.Environ(), shareChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestShareCallerMemory", "%s", out)
	require.NotContains(t, string(out), "SKIP", "%s", out)
}

func sharedCallerChecks(t *testing.T) {
	var args []string // copies: os.Args pointed into the command line
	for _, a := range os.Args {
		args = append(args, strings.Clone(a))
	}
	require.NoError(t, ShareCallerMemory("title\x00x"))
	assert.Equal(t, args, os.Args, "os.Args keeps its strings")
	cmdline, err := os.ReadFile("/proc/self/cmdline")
	require.NoError(t, err)
	assert.Equal(t, "title\x00x\x00", string(bytes.TrimRight(cmdline, "\x00"))+"\x00")
	assert.NotContains(t, string(cmdline), "secret-argument")
	score, err := os.ReadFile("/proc/self/oom_score_adj")
	require.NoError(t, err)
	assert.Equal(t, "1000\n", string(score))

	// An init that runs a command, with its output.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	p, err := Start(&Config{DropCapabilities: dropCaps, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, OOMScoreAdj: true,
		Path: []string{"/bin/sh"}, Argv: []string{"sh", "-c", "echo $$ $(cat /proc/self/oom_score_adj); exit 3"},
		Stdio: [3]*os.File{stdio(t)[0], w, w}})
	require.NoError(t, err)
	w.Close()
	assert.True(t, sameMemory(t, os.Getpid(), p.Pid), "init shares this process's memory")
	require.NotNil(t, p.release, "its memory is to be unmapped once it is reaped")
	initLine, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/cmdline")
	require.NoError(t, err)
	assert.Equal(t, cmdline, initLine, "init shows the blanked command line")
	require.NoError(t, p.Release(context.Background()))
	// Named by now: its command was executed. (Init names itself first
	// thing, but Start returns before it may have run at all.)
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/comm")
	require.NoError(t, err)
	assert.Equal(t, "hutch-init\n", string(comm))
	ex, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, ex.Reported)
	assert.Equal(t, 3, ex.Status.ExitStatus())
	out, _ := io.ReadAll(r)
	assert.Equal(t, "2 1000\n", string(out), "the command is PID 2, with the commands' OOM score")
	assert.Nil(t, p.release, "unmapped once reaped")
	p.Close()

	// Inits that must not share it get a copy: OwnMemory, and no PID
	// namespace of their own.
	p, err = Start(&Config{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Pause: true, Stdio: stdio(t), OwnMemory: true})
	require.NoError(t, err)
	require.NoError(t, p.Release(context.Background()))
	assert.False(t, sameMemory(t, os.Getpid(), p.Pid))
	require.NoError(t, p.Kill())
	p.Close()
	out2, _ := runEcho(t, "echo ok", nil)
	assert.Equal(t, "ok\n", out2)
	assert.True(t, strings.HasPrefix(string(cmdline), "title\x00x\x00"))
}
