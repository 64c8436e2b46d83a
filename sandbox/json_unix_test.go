//go:build unix

package sandbox_test

import (
	"encoding/json"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/sandbox"
)

func TestResultSignalName(t *testing.T) {
	killed := &sandbox.Result{Status: sandbox.Signaled, ExitCode: -1, Signal: syscall.SIGKILL}
	assert.Equal(t, "SIGKILL", killed.SignalName())
	b, err := json.Marshal(killed)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"signal":9,"signal_name":"SIGKILL"`)

	exited := &sandbox.Result{Status: sandbox.NonZeroExit, ExitCode: 3}
	assert.Equal(t, "", exited.SignalName())
	b, err = json.Marshal(exited)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "signal_name")
}
