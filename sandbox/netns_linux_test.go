package sandbox_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/sandbox"
)

// A network namespace passed from run to run must hold nothing of the
// run before: no socket, listening, connected or in TIME_WAIT.
func TestNetworkNamespaceReuseCarriesNoSockets(t *testing.T) {
	img, _ := busybox(t)
	for i := range 5 {
		if i == 2 {
			// A run that fails its setup (before lo is brought up) leaves
			// its namespace too.
			_, err := (&sandbox.Cmd{Image: img, Args: []string{"true"}, Dir: "/no/such/dir"}).Run(context.Background())
			require.Error(t, err)
		}
		// Leaves a connection in TIME_WAIT (and, were it not for the PID
		// namespace ending, a listener). The server closes first, with
		// nothing unread (unread data would make it a reset).
		res := sh(t, img, "nc -l -p 7000 -e true & sleep 0.1; nc 127.0.0.1 7000 </dev/null; grep -o 'tw [0-9]*' /proc/net/sockstat; nc -l -p 7001 & sleep 0.05")
		require.Regexp(t, `^tw [1-9]`, string(res.Stdout), "the run leaves a connection in TIME_WAIT (both ends, when they close at once)")
		res = sh(t, img, "cat /proc/net/sockstat; ip -o link show lo | grep -c UP")
		out := string(res.Stdout)
		assert.Contains(t, out, "TCP: inuse 0 ", "a socket was carried over")
		assert.Contains(t, out, " tw 0 ", "a TIME_WAIT connection was carried over")
		assert.True(t, strings.HasSuffix(out, "1\n"), "lo is up: %s", out)
	}
}
