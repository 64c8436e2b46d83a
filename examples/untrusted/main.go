// Command untrusted is a small HTTP service that runs user-supplied Python
// scripts in hutch sandboxes and answers their output and how they ended.
//
//	sudo go run ./examples/untrusted -addr 127.0.0.1:8081
//	curl -s 127.0.0.1:8081/run -d '{"script": "print(input()[::-1])", "stdin": "hello"}'
//
// A script runs on the host image (rootfs.Host(): the host's /usr read-only,
// a generated /etc, nothing else of the host) with hutch's hardened defaults:
// as nobody, no capabilities, a seccomp allowlist, no network but its own
// loopback, its own PID namespace, a throwaway writable layer; and with
// limits on CPU time, wall time, memory, processes, output and file size.
// No option of the request can loosen them. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	workers := flag.Int("workers", runtime.NumCPU(), "scripts run at once")
	queue := flag.Int("queue", 32, "scripts waiting to run; past it the service answers 503")
	flag.Parse()
	if *workers < 1 || *queue < 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "untrusted: -workers must be at least 1, -queue at least 0, and no arguments")
		flag.Usage()
		os.Exit(2)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	img := rootfs.Host()
	// Fail at start, not at the first request, where sandboxes cannot run.
	res, err := sandbox.Run(ctx, img, []string{"python3", "--version"}, sandbox.Limits{WallTime: 10 * time.Second, Memory: 64 << 20})
	if err == nil && res.Status != sandbox.OK {
		err = fmt.Errorf("python3 --version in a sandbox ended %v: %s", res.Status, res.Stderr)
	}
	if err != nil {
		logger.Fatalf("untrusted: cannot run Python in a sandbox here: %v", err)
	}
	if res.Enforced["Memory"] != "cgroup" {
		logger.Printf("untrusted: warning: no cgroups (not root?): memory and process limits are weaker")
	}

	s := newService(img, *workers, *queue, nil, logger)
	srv := &http.Server{
		Addr:              *addr,
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("untrusted: %s; listening on %s (%d workers, queue %d)", strings.TrimSpace(string(res.Stdout)), *addr, *workers, *queue)
	select {
	case err := <-errc:
		logger.Fatalf("untrusted: %v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Printf("untrusted: %v", err)
	}
}
