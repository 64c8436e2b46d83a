package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// Bounds on requests. Past a size bound the answer is 413, past a range
// bound 400.
const (
	maxBody        = 2 << 20
	maxScript      = 64 << 10 // also well under the kernel's 128 KiB for one argument
	maxStdin       = 1 << 20
	minTimeout     = 10 * time.Millisecond
	maxTimeout     = 10 * time.Second
	defaultTimeout = 2 * time.Second
)

// scriptLimits are what a script may use, whatever it asks; the request only
// chooses its timeout (CPUTime, and WallTime from it).
var scriptLimits = sandbox.Limits{
	Memory:    128 << 20,
	Pids:      32,
	Output:    64 << 10, // each of stdout and stderr
	FileSize:  8 << 20,
	Disk:      16 << 20,
	OpenFiles: 64,
}

// runRequest is the body of POST /run.
type runRequest struct {
	Script string `json:"script"`
	Stdin  string `json:"stdin"`
	// TimeoutMS is the script's CPU time limit. Its wall-clock limit is
	// twice that plus one second, for a script that sleeps or waits.
	TimeoutMS int64 `json:"timeout_ms"`
}

// runResponse is how the script ended. Status is one of the sandbox's
// statuses: ok, nonzero_exit, signaled, cpu_time_limit, wall_time_limit,
// memory_limit, output_limit, file_size_limit.
type runResponse struct {
	Status          sandbox.Status `json:"status"`
	Message         string         `json:"message"`
	ExitCode        int            `json:"exit_code"`
	Signal          string         `json:"signal,omitempty"`
	Stdout          string         `json:"stdout"`
	Stderr          string         `json:"stderr"`
	StdoutTruncated bool           `json:"stdout_truncated,omitempty"`
	StderrTruncated bool           `json:"stderr_truncated,omitempty"`
	CPUTimeMS       int64          `json:"cpu_time_ms"`
	WallTimeMS      int64          `json:"wall_time_ms"`
	MemoryPeakBytes int64          `json:"memory_peak_bytes"`
}

// runFunc runs a script's sandboxed command and waits for it: cmd.Run,
// except in tests that need to hold a run.
type runFunc func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error)

// service runs Python scripts in sandboxes over HTTP.
type service struct {
	img rootfs.Image
	run runFunc
	log *log.Logger
	// admit holds a token for each request running or waiting
	// (workers+queue), work one for each request running.
	admit, work chan struct{}
}

func newService(img rootfs.Image, workers, queue int, run runFunc, logger *log.Logger) *service {
	if run == nil {
		run = func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error) { return cmd.Run(ctx) }
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &service{img: img, run: run, log: logger,
		admit: make(chan struct{}, workers+queue), work: make(chan struct{}, workers)}
}

func (s *service) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/run", s.serveRun)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (s *service) serveRun(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	var req runRequest
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", mbe.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: %v", err)
		return
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one value")
		return
	}
	switch {
	case len(req.Script) > maxScript:
		writeError(w, http.StatusRequestEntityTooLarge, "script is %d bytes, more than the limit of %d", len(req.Script), maxScript)
		return
	case len(req.Stdin) > maxStdin:
		writeError(w, http.StatusRequestEntityTooLarge, "stdin is %d bytes, more than the limit of %d", len(req.Stdin), maxStdin)
		return
	case strings.TrimSpace(req.Script) == "":
		writeError(w, http.StatusBadRequest, "script is empty")
		return
	case strings.ContainsRune(req.Script, 0):
		writeError(w, http.StatusBadRequest, "script contains a NUL byte")
		return
	}
	timeout := defaultTimeout
	if req.TimeoutMS != 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	if timeout < minTimeout || timeout > maxTimeout {
		writeError(w, http.StatusBadRequest, "timeout_ms %d out of range [%d, %d]",
			req.TimeoutMS, minTimeout.Milliseconds(), maxTimeout.Milliseconds())
		return
	}

	select {
	case s.admit <- struct{}{}:
		defer func() { <-s.admit }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "too many scripts running or waiting; retry later")
		return
	}
	select {
	case s.work <- struct{}{}:
		defer func() { <-s.work }()
	case <-r.Context().Done():
		return
	}

	limits := scriptLimits
	limits.CPUTime, limits.WallTime = timeout, 2*timeout+time.Second
	cmd := &sandbox.Cmd{
		Image: s.img,
		// -I: isolated mode, no PYTHON* variables, no user site directory.
		Args:   []string{"python3", "-I", "-c", req.Script},
		Env:    []string{"LANG=C.UTF-8", "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1"},
		Dir:    "/tmp",
		Stdin:  strings.NewReader(req.Stdin),
		Limits: limits,
	}
	res, err := s.run(r.Context(), cmd)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left; the sandbox is already gone
		}
		// A setup failure is the service's, not the script's: log the
		// details, tell the client little.
		s.log.Printf("untrusted: running a script: %v", err)
		writeError(w, http.StatusInternalServerError, "the sandbox could not be set up")
		return
	}
	s.log.Printf("untrusted: %s in %v (cpu %v, memory %d KiB)", res.Status,
		res.WallTime.Round(time.Millisecond), res.CPUTime.Round(time.Millisecond), res.MemoryPeak>>10)
	writeJSON(w, http.StatusOK, response(res, limits))
}

func response(res *sandbox.Result, limits sandbox.Limits) *runResponse {
	out := &runResponse{
		Status:          res.Status,
		ExitCode:        res.ExitCode,
		Stdout:          string(res.Stdout),
		Stderr:          string(res.Stderr),
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
		CPUTimeMS:       res.CPUTime.Milliseconds(),
		WallTimeMS:      res.WallTime.Milliseconds(),
		MemoryPeakBytes: res.MemoryPeak,
	}
	out.Signal = res.SignalName()
	switch res.Status {
	case sandbox.OK:
		out.Message = "the script exited normally"
	case sandbox.NonZeroExit:
		out.Message = fmt.Sprintf("the script exited with code %d", res.ExitCode)
	case sandbox.Signaled:
		out.Message = "the script was killed by " + out.Signal
	case sandbox.CPUTimeLimit:
		out.Message = fmt.Sprintf("the script used more than %v of CPU time", limits.CPUTime)
	case sandbox.WallTimeLimit:
		out.Message = fmt.Sprintf("the script ran longer than %v", limits.WallTime)
	case sandbox.MemoryLimit:
		out.Message = fmt.Sprintf("the script used more than %d MiB of memory", limits.Memory>>20)
	case sandbox.OutputLimit:
		out.Message = fmt.Sprintf("the script wrote more than %d KiB to stdout or stderr", limits.Output>>10)
	case sandbox.FileSizeLimit:
		out.Message = fmt.Sprintf("the script wrote a file larger than %d MiB", limits.FileSize>>20)
	default:
		out.Message = res.Status.String()
	}
	return out
}
