// Package sandboxtest starts sandboxes for Go tests, in the manner of
// net/http/httptest: a throwaway container per test, with a service in it
// that the test reaches through a forwarded port, torn down by t.Cleanup.
//
//	c := sandboxtest.Start(t, rootfs.Dir(root), []string{"httpd", "-f", "-p", "8080"},
//		sandboxtest.WaitForPort(8080))
//	resp, err := http.Get("http://" + c.Addr(8080) + "/")
//
// There is no daemon: the sandbox lives in the test process, and dies
// with it even if the test binary is killed. When the machine cannot make
// a sandbox (no namespaces, not allowed), Start skips the test with a
// message that names what is missing.
package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// DefaultTimeout bounds each readiness wait unless WithTimeout says
// otherwise.
const DefaultTimeout = 30 * time.Second

// Container is a sandbox started for one test, with its main process.
type Container struct {
	*sandbox.Sandbox
	// Main is the process Start started.
	Main *sandbox.Process

	t    testing.TB
	logs *logBuffer

	mu    sync.Mutex
	addrs map[int]string
}

// Option tunes Start.
type Option func(*options)

type options struct {
	config  *sandbox.Config
	env     []string
	timeout time.Duration
	waits   []wait
}

type wait struct {
	what string
	// ready reports nil when the wait is over.
	ready func(ctx context.Context, c *Container) error
}

// WithConfig sets the sandbox's configuration (limits, binds, ...).
func WithConfig(cfg *sandbox.Config) Option { return func(o *options) { o.config = cfg } }

// WithEnv adds environment variables to the main process.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// WithTimeout bounds each readiness wait (DefaultTimeout by default).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WaitForLog waits until the main process's output (stdout and stderr
// together) matches the regular expression re.
func WaitForLog(re string) Option {
	rx := regexp.MustCompile(re)
	return func(o *options) {
		o.waits = append(o.waits, wait{what: fmt.Sprintf("a log line matching %q", re), ready: func(_ context.Context, c *Container) error {
			if rx.MatchString(c.logs.String()) {
				return nil
			}
			return errors.New("no match yet")
		}})
	}
}

// WaitForPort waits until the sandbox accepts TCP connections on its
// loopback at port.
func WaitForPort(port int) Option {
	return func(o *options) {
		o.waits = append(o.waits, wait{what: fmt.Sprintf("port %d to accept connections", port), ready: func(ctx context.Context, c *Container) error {
			conn, err := c.Dial(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			return conn.Close()
		}})
	}
}

// WaitForHTTP waits until GET path on the sandbox's port answers status.
func WaitForHTTP(port int, path string, status int) Option {
	return func(o *options) {
		o.waits = append(o.waits, wait{what: fmt.Sprintf("GET %s on port %d to answer %d", path, port, status), ready: func(ctx context.Context, c *Container) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(port)+path, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != status {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}})
	}
}

// WaitForCommand waits until args, run in the sandbox, exits 0.
func WaitForCommand(args ...string) Option {
	return func(o *options) {
		o.waits = append(o.waits, wait{what: fmt.Sprintf("%q to exit 0", strings.Join(args, " ")), ready: func(ctx context.Context, c *Container) error {
			res, err := c.Command(args...).Run(ctx)
			if err != nil {
				return err
			}
			if res.Status != sandbox.OK {
				return fmt.Errorf("%s (exit code %d)", res.Status, res.ExitCode)
			}
			return nil
		}})
	}
}

// Start starts a sandbox from img running args as its main process, waits
// for it to be ready as the options say, and closes it when the test ends.
// It fails the test, with the last lines of the main process's output,
// when the process ends or a wait times out first.
func Start(t testing.TB, img rootfs.Image, args []string, opts ...Option) *Container {
	t.Helper()
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	sb, err := sandbox.New(ctx, img, o.config)
	if err != nil {
		skipIfCannotSandbox(t, err)
		t.Fatalf("sandboxtest: starting the sandbox: %v", err)
	}
	c := &Container{Sandbox: sb, t: t, logs: &logBuffer{}, addrs: map[int]string{}}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("sandboxtest: closing the sandbox: %v", err)
		}
	})
	cmd := sb.Command(args...)
	cmd.Env = o.env
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	c.Main, err = cmd.Start(context.Background())
	if err != nil {
		t.Fatalf("sandboxtest: starting %q: %v", strings.Join(args, " "), err)
	}
	for _, w := range o.waits {
		c.waitFor(w, o.timeout)
	}
	return c
}

// waitFor polls w until it is ready, the main process ends, or timeout.
func (c *Container) waitFor(w wait, timeout time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
		last = w.ready(attempt, c)
		cancelAttempt()
		if last == nil {
			return
		}
		select {
		case <-c.Main.Done():
			res, err := c.Main.Wait()
			c.t.Fatalf("sandboxtest: the main process ended (%s) before %s; last output:\n%s", describe(res, err), w.what, c.tail(20))
		case <-ctx.Done():
			c.t.Fatalf("sandboxtest: timed out after %v waiting for %s (last attempt: %v); last output:\n%s", timeout, w.what, last, c.tail(20))
		case <-tick.C:
		}
	}
}

func describe(res *sandbox.Result, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s, exit code %d, signal %d", res.Status, res.ExitCode, res.Signal)
}

// Logs returns what the main process has written so far, stdout and
// stderr together.
func (c *Container) Logs() string { return c.logs.String() }

// tail returns the last n lines of the logs.
func (c *Container) tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.logs.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Addr returns a host address ("127.0.0.1:PORT") forwarded to port in the
// sandbox, made on first use.
func (c *Container) Addr(port int) string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.addrs[port]; ok {
		return a
	}
	a, err := c.Forward(context.Background(), port)
	if err != nil {
		c.t.Fatalf("sandboxtest: forwarding port %d: %v", port, err)
	}
	c.addrs[port] = a
	return a
}

// Exec runs args in the sandbox and returns its result, failing the test
// if it could not run at all (its exit status is the caller's to check).
func (c *Container) Exec(args ...string) *sandbox.Result {
	c.t.Helper()
	res, err := c.Command(args...).Run(context.Background())
	if err != nil {
		c.t.Fatalf("sandboxtest: exec %q: %v", strings.Join(args, " "), err)
	}
	return res
}

// skipIfCannotSandbox skips the test when err says the machine cannot make
// a sandbox at all.
func skipIfCannotSandbox(t testing.TB, err error) {
	t.Helper()
	var se *sandbox.SetupError
	if errors.As(err, &se) && se.Stage == "clone" &&
		(errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC)) {
		t.Skipf("sandboxtest: this machine cannot make a sandbox (creating namespaces failed: %v)", err)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("sandboxtest: this system cannot make a sandbox: %v", err)
	}
}

// logBuffer collects output safely from two writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 {
		// Keep the tail: drop the oldest half.
		rest := b.buf.Bytes()[b.buf.Len()/2:]
		b.buf = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
