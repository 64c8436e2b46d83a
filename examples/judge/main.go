// Command judge is an online judge served over HTTP, built on hutch.
//
//	sudo go run ./examples/judge -addr 127.0.0.1:8080 -workers 2 -queue 16
//
// POST /submissions takes a program in C, C++ or Python and its test cases,
// compiles it in a sandbox, runs each test case in a fresh sandbox with CPU
// time, wall time, memory and output limits, and answers a verdict per case
// (accepted, wrong_answer, time_limit, memory_limit, output_limit,
// runtime_error) with the CPU time and peak memory it used, or compile_error
// with the compiler's message. Nothing of a submission ever runs outside a
// sandbox, the compiler included.
//
// At most -workers submissions are judged at once and -queue more wait for a
// worker; past that the judge answers 503. GET /healthz shows the load.
//
// See README.md for the request and the answer.
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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	workers := flag.Int("workers", runtime.NumCPU(), "submissions judged at once")
	queue := flag.Int("queue", 16, "submissions waiting for a worker; past it the judge answers 503")
	flag.Parse()
	if *workers < 1 || *queue < 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "judge: -workers must be at least 1, -queue at least 0, and no arguments")
		flag.Usage()
		os.Exit(2)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	img := rootfs.Host()
	if err := checkSandbox(ctx, img, logger); err != nil {
		logger.Fatalf("judge: this machine cannot run sandboxes: %v (run as root on Linux with namespaces and cgroups)", err)
	}

	// Test cases run in sandboxes set up ahead of time. A pool's per-run
	// binds need root; without it every case gets a fresh sandbox.
	var run runner
	if os.Geteuid() == 0 {
		pool, err := newCasePool(img, *workers)
		if err != nil {
			logger.Fatalf("judge: %v", err)
		}
		defer pool.Close()
		run = poolRunner(pool)
	}
	j := newJudge(img, *workers, *queue, run, logger)
	srv := &http.Server{
		Addr:              *addr,
		Handler:           j.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("judge: listening on %s (%d workers, queue %d)", *addr, *workers, *queue)

	select {
	case err := <-errc:
		logger.Fatalf("judge: %v", err)
	case <-ctx.Done():
	}
	logger.Printf("judge: shutting down")
	// Submissions being judged get a while to finish; Close then cancels
	// them, which kills their sandboxes.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Printf("judge: %v", err)
	}
}

// checkSandbox runs `true` in a sandbox, so that a machine that cannot make
// one fails at start rather than at the first submission, and logs which
// languages' tools the image has.
func checkSandbox(ctx context.Context, img rootfs.Image, logger *log.Logger) error {
	res, err := sandbox.Run(ctx, img, []string{"true"}, sandbox.Limits{WallTime: 10 * time.Second})
	if err != nil {
		return err
	}
	if res.Status != sandbox.OK {
		return fmt.Errorf("`true` in a sandbox ended %v", res.Status)
	}
	names := make([]string, 0, len(languages))
	for name := range languages {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tool := languages[name].Compile[0]
		res, err := sandbox.Run(ctx, img, []string{tool, "--version"}, sandbox.Limits{WallTime: 10 * time.Second})
		if err != nil || res.Status != sandbox.OK {
			logger.Printf("judge: %s: %s not usable in the sandbox (%v); its submissions will fail", name, tool, err)
			continue
		}
		first, _, _ := strings.Cut(string(res.Stdout), "\n")
		logger.Printf("judge: %s: %s", name, first)
	}
	return nil
}
