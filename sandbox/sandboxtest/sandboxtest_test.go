package sandboxtest_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox/sandboxtest"
)

func webRoot(t *testing.T) string {
	root := testenv.BusyboxRoot(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "www"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "www/index.html"), []byte("it works\n"), 0o644))
	return root
}

func TestHTTPServer(t *testing.T) {
	root := webRoot(t)
	c := sandboxtest.Start(t, rootfs.Dir(root),
		[]string{"sh", "-c", "echo starting; exec httpd -f -v -p 8080 -h /www"},
		sandboxtest.WaitForLog("starting"), sandboxtest.WaitForPort(8080), sandboxtest.WaitForHTTP(8080, "/", 200))
	resp, err := http.Get("http://" + c.Addr(8080) + "/index.html")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "it works\n", string(body))

	// Files in and out, exec.
	require.NoError(t, c.WriteFile("/www/new.html", []byte("new\n"), 0o644))
	resp, err = http.Get("http://" + c.Addr(8080) + "/new.html")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "new\n", string(body))
	res := c.Exec("sh", "-c", "wget -q -O - http://127.0.0.1:8080/new.html")
	assert.Equal(t, "new\n", string(res.Stdout))
	assert.Contains(t, c.Logs(), "starting")
}

func TestWaitForCommand(t *testing.T) {
	root := testenv.BusyboxRoot(t)
	c := sandboxtest.Start(t, rootfs.Dir(root), []string{"sh", "-c", "sleep 0.3; touch /tmp/ready; sleep 100"},
		sandboxtest.WaitForCommand("test", "-e", "/tmp/ready"))
	assert.Equal(t, 0, c.Exec("test", "-e", "/tmp/ready").ExitCode)
}

// fakeT records a failure instead of failing the real test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = strings.TrimSpace(strings.ReplaceAll(format, "%", "")) + "|" + strings.TrimSpace(fmtArgs(args))
	panic(f)
}
func (f *fakeT) Helper() {}

func fmtArgs(args []any) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(toString(a), "\n", " ")))
		b.WriteString(" ")
	}
	return b.String()
}

func toString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case error:
		return v.Error()
	default:
		return ""
	}
}

func TestFailureMessages(t *testing.T) {
	root := testenv.BusyboxRoot(t)
	run := func(args []string, opts ...sandboxtest.Option) string {
		ft := &fakeT{TB: t}
		func() {
			defer func() {
				if r := recover(); r != nil && r != ft {
					panic(r)
				}
			}()
			sandboxtest.Start(ft, rootfs.Dir(root), args, opts...)
		}()
		return ft.failed
	}
	msg := run([]string{"sh", "-c", "echo about to fail; exit 4"}, sandboxtest.WaitForPort(9999))
	assert.Contains(t, msg, "main process ended")
	assert.Contains(t, msg, "about to fail", "the message shows the log")

	start := time.Now()
	msg = run([]string{"sh", "-c", "echo waiting; sleep 100"}, sandboxtest.WaitForLog("never"), sandboxtest.WithTimeout(500*time.Millisecond))
	assert.Contains(t, msg, "timed out")
	assert.Contains(t, msg, "waiting")
	assert.Less(t, time.Since(start), 10*time.Second)
}
