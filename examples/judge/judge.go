package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// Bounds on what a client may send. Past a size bound the answer is 413,
// past a range bound 400.
const (
	maxBody        = 8 << 20  // the whole request body
	maxSource      = 64 << 10 // the source file
	maxTests       = 64       // test cases per submission
	maxCaseBytes   = 2 << 20  // one test's input, and one test's expected output
	minTimeLimit   = 1 * time.Millisecond
	maxTimeLimit   = 10 * time.Second
	defTimeLimit   = 1 * time.Second
	minMemoryLimit = 16 << 20
	maxMemoryLimit = 1 << 30
	defMemoryLimit = 256 << 20
)

// Limits of the compile sandbox, and what of its output is kept.
var compileLimits = sandbox.Limits{
	CPUTime:  10 * time.Second,
	WallTime: 20 * time.Second,
	Memory:   1 << 30,
	Pids:     64,
	Output:   1 << 20,
	FileSize: 64 << 20, // the binary
	Disk:     256 << 20,
}

const (
	maxCompileOutput = 8 << 10 // compiler messages in the answer
	maxCaseOutput    = 1 << 10 // stdout/stderr excerpts of a failed case
	minOutputLimit   = 1 << 20 // a case may print at least this much...
	// ...or twice its expected output, whichever is more; past it the
	// case is output_limit.
)

// Verdicts.
const (
	verdictAccepted     = "accepted"
	verdictWrongAnswer  = "wrong_answer"
	verdictTimeLimit    = "time_limit"
	verdictMemoryLimit  = "memory_limit"
	verdictOutputLimit  = "output_limit"
	verdictRuntimeError = "runtime_error"
	verdictCompileError = "compile_error"
)

// submission is the body of POST /submissions.
type submission struct {
	Language      string     `json:"language"`
	Source        string     `json:"source"`
	Tests         []testCase `json:"tests"`
	TimeLimitMS   int64      `json:"time_limit_ms"`   // CPU time per case; 0: 1000
	MemoryLimitMB int64      `json:"memory_limit_mb"` // per case; 0: 256
	Compare       string     `json:"compare"`         // "exact" or "whitespace" (default)
}

type testCase struct {
	Input          string `json:"input"`
	ExpectedOutput string `json:"expected_output"`
}

// verdict is the answer to a submission.
type verdict struct {
	// Verdict is accepted when every case is, compile_error when the
	// source did not compile, else the verdict of the first case that
	// failed.
	Verdict       string       `json:"verdict"`
	CompileOutput string       `json:"compile_output,omitempty"`
	Passed        int          `json:"passed"`
	Total         int          `json:"total"`
	Cases         []caseResult `json:"cases"`
}

type caseResult struct {
	Verdict         string `json:"verdict"`
	CPUTimeMS       int64  `json:"cpu_time_ms"`
	WallTimeMS      int64  `json:"wall_time_ms"`
	MemoryPeakBytes int64  `json:"memory_peak_bytes"`
	// ExitCode is -1 when a signal ended the program.
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// Stdout and Stderr are the start of the program's output, for a
	// case that was not accepted.
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
}

// runner runs one test case's command in a sandbox and waits for it. The
// default, runFresh, makes a fresh sandbox for every case with Cmd.Run;
// poolRunner runs it in a sandbox a sandbox.Pool set up ahead of time,
// with the same result.
type runner func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error)

func runFresh(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error) {
	return cmd.Run(ctx)
}

// caseDisk bounds a test case's writable layer; a pool's sandboxes are
// made with it.
const caseDisk = 32 << 20

// newCasePool keeps workers sandboxes of img ready for test cases.
func newCasePool(img rootfs.Image, workers int) (*sandbox.Pool, error) {
	return sandbox.NewPool(img, workers, &sandbox.Cmd{Limits: sandbox.Limits{Disk: caseDisk}})
}

// poolRunner runs each case in one of pool's sandboxes. The case's own
// bind (its submission's directory at /work) is added for that run alone.
func poolRunner(pool *sandbox.Pool) runner {
	return func(ctx context.Context, cmd *sandbox.Cmd) (*sandbox.Result, error) {
		c := *cmd
		c.Image, c.Limits.Disk = nil, 0 // the pool's
		return pool.Run(ctx, &c)
	}
}

// judge is the HTTP service. Its zero value is not usable; see newJudge.
type judge struct {
	img rootfs.Image
	run runner
	// tmpDir holds the submissions' directories ("" is os.TempDir()).
	tmpDir string
	log    *log.Logger

	// admit holds a token for every submission being judged or waiting
	// (workers+queue); work one for every submission being judged.
	admit chan struct{}
	work  chan struct{}
}

func newJudge(img rootfs.Image, workers, queue int, run runner, logger *log.Logger) *judge {
	if run == nil {
		run = runFresh
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &judge{
		img:   img,
		run:   run,
		log:   logger,
		admit: make(chan struct{}, workers+queue),
		work:  make(chan struct{}, workers),
	}
}

func (j *judge) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/submissions", j.submit)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"judging": len(j.work), "waiting": len(j.admit) - len(j.work),
			"workers": cap(j.work), "queue": cap(j.admit) - cap(j.work),
		})
	})
	return mux
}

// httpError is a request the judge refuses, with the status to answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) *httpError {
	return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (j *judge) submit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	sub, err := decodeSubmission(w, r)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = badRequest("%v", err)
		}
		writeError(w, he.status, he.msg)
		return
	}

	// Admission: a bounded queue in front of a bounded number of workers.
	select {
	case j.admit <- struct{}{}:
		defer func() { <-j.admit }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable,
			fmt.Sprintf("judge is busy: %d submissions judged and %d waiting; retry later",
				cap(j.work), cap(j.admit)-cap(j.work)))
		return
	}
	select {
	case j.work <- struct{}{}:
		defer func() { <-j.work }()
	case <-r.Context().Done():
		return // the client is gone
	}

	start := time.Now()
	v, err := j.judgeSubmission(r.Context(), sub)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		j.log.Printf("judge: %s submission: %v", sub.Language, err)
		writeError(w, http.StatusInternalServerError, "could not judge: "+err.Error())
		return
	}
	j.log.Printf("judge: %s submission: %s (%d/%d) in %v", sub.Language, v.Verdict, v.Passed, v.Total,
		time.Since(start).Round(time.Millisecond))
	writeJSON(w, http.StatusOK, v)
}

// decodeSubmission reads, decodes and checks the request body, filling in
// the defaults.
func decodeSubmission(w http.ResponseWriter, r *http.Request) (*submission, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	var sub submission
	if err := dec.Decode(&sub); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge("request body larger than %d bytes", mbe.Limit)
		}
		return nil, badRequest("invalid JSON body: %v", err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, badRequest("invalid JSON body: more than one value")
	}
	if _, ok := languages[sub.Language]; !ok {
		return nil, badRequest("unknown language %q: want one of %s", sub.Language, languageNames)
	}
	switch {
	case len(sub.Source) > maxSource:
		return nil, tooLarge("source is %d bytes, more than the limit of %d", len(sub.Source), maxSource)
	case strings.TrimSpace(sub.Source) == "":
		return nil, badRequest("source is empty")
	case len(sub.Tests) == 0:
		return nil, badRequest("no tests: give at least one {input, expected_output}")
	case len(sub.Tests) > maxTests:
		return nil, tooLarge("%d tests, more than the limit of %d", len(sub.Tests), maxTests)
	}
	for i, tc := range sub.Tests {
		if len(tc.Input) > maxCaseBytes || len(tc.ExpectedOutput) > maxCaseBytes {
			return nil, tooLarge("test %d: input or expected_output larger than %d bytes", i, maxCaseBytes)
		}
	}
	if sub.TimeLimitMS == 0 {
		sub.TimeLimitMS = defTimeLimit.Milliseconds()
	}
	if tl := time.Duration(sub.TimeLimitMS) * time.Millisecond; tl < minTimeLimit || tl > maxTimeLimit {
		return nil, badRequest("time_limit_ms %d out of range [%d, %d]",
			sub.TimeLimitMS, minTimeLimit.Milliseconds(), maxTimeLimit.Milliseconds())
	}
	if sub.MemoryLimitMB == 0 {
		sub.MemoryLimitMB = defMemoryLimit >> 20
	}
	if sub.MemoryLimitMB < minMemoryLimit>>20 || sub.MemoryLimitMB > maxMemoryLimit>>20 {
		return nil, badRequest("memory_limit_mb %d out of range [%d, %d]",
			sub.MemoryLimitMB, minMemoryLimit>>20, maxMemoryLimit>>20)
	}
	switch sub.Compare {
	case "":
		sub.Compare = compareWhitespace
	case compareExact, compareWhitespace:
	default:
		return nil, badRequest("unknown compare %q: want %q or %q", sub.Compare, compareExact, compareWhitespace)
	}
	return &sub, nil
}

// judgeSubmission compiles the submission in a sandbox and runs every test
// case in a sandbox of its own. The error is for a failure of the judge (a
// sandbox that could not be set up), never for one of the submission.
func (j *judge) judgeSubmission(ctx context.Context, sub *submission) (*verdict, error) {
	lang := languages[sub.Language]
	dir, err := j.makeWorkDir(lang, sub.Source)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	v := &verdict{Total: len(sub.Tests), Cases: []caseResult{}}
	msg, ok, err := j.compile(ctx, lang, dir)
	if err != nil {
		return nil, err
	}
	v.CompileOutput = msg
	if !ok {
		v.Verdict = verdictCompileError
		return v, nil
	}

	v.Verdict = verdictAccepted
	tl := time.Duration(sub.TimeLimitMS) * time.Millisecond
	for _, tc := range sub.Tests {
		outCap := max(minOutputLimit, 2*int64(len(tc.ExpectedOutput)))
		cmd := &sandbox.Cmd{
			Image: j.img,
			Args:  lang.Run,
			Env:   lang.Env,
			Dir:   "/tmp",
			Stdin: strings.NewReader(tc.Input),
			Binds: []sandbox.Bind{{Source: dir, Target: workDir}}, // read-only
			Limits: sandbox.Limits{
				CPUTime: tl,
				// A program that sleeps or blocks uses no CPU; the wall
				// clock catches it.
				WallTime: 2*tl + time.Second,
				Memory:   sub.MemoryLimitMB << 20,
				Pids:     32,
				Output:   outCap,
				FileSize: 16 << 20,
				Disk:     caseDisk,
			},
		}
		res, err := j.run(ctx, cmd)
		if err != nil {
			return nil, fmt.Errorf("run test case: %w", err)
		}
		cr := caseVerdict(res, sub.Compare, tc.ExpectedOutput)
		if cr.Verdict == verdictAccepted {
			v.Passed++
		} else if v.Verdict == verdictAccepted {
			v.Verdict = cr.Verdict
		}
		v.Cases = append(v.Cases, cr)
	}
	return v, nil
}

// makeWorkDir makes the submission's directory on the host and writes the
// source into it. The compiler runs as nobody, the sandbox's default user when
// hutch runs as root, so the directory is nobody's; only root and nobody can
// enter it (mode 0700), and no one can swap the binary between the compile
// and the runs, which see it read-only.
func (j *judge) makeWorkDir(lang *language, source string) (string, error) {
	dir, err := os.MkdirTemp(j.tmpDir, "hutch-judge-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, lang.Source), []byte(source), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	// Without root the sandbox's user is the caller itself (root of a
	// user namespace that maps only the caller's uid): the directory is
	// already its own.
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, sandbox.DefaultUID, sandbox.DefaultGID); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// compile compiles the source in dir in a sandbox that sees dir, writable, at
// /work. ok is false for a compile error; msg is what the compiler said.
func (j *judge) compile(ctx context.Context, lang *language, dir string) (msg string, ok bool, err error) {
	cmd := &sandbox.Cmd{
		Image:  j.img,
		Args:   lang.Compile,
		Env:    lang.Env,
		Dir:    workDir,
		Binds:  []sandbox.Bind{{Source: dir, Target: workDir, Writable: true}},
		Limits: compileLimits,
	}
	res, err := cmd.Run(ctx)
	if err != nil {
		var se *sandbox.SetupError
		if errors.As(err, &se) && se.Stage == "execve" && errors.Is(err, fs.ErrNotExist) {
			return "", false, fmt.Errorf("%s is not installed on this server", lang.Compile[0])
		}
		return "", false, fmt.Errorf("compile: %w", err)
	}
	msg = excerpt(append(res.Stdout, res.Stderr...), maxCompileOutput)
	switch res.Status {
	case sandbox.OK:
		return msg, true, nil
	case sandbox.CPUTimeLimit, sandbox.WallTimeLimit:
		msg = fmt.Sprintf("compilation took longer than %v\n%s", compileLimits.CPUTime, msg)
	case sandbox.MemoryLimit:
		msg = fmt.Sprintf("the compiler used more than %d MiB of memory\n%s", compileLimits.Memory>>20, msg)
	case sandbox.OutputLimit:
		msg = "the compiler wrote too much output\n" + msg
	case sandbox.FileSizeLimit:
		msg = fmt.Sprintf("the compiled program is larger than %d MiB\n%s", compileLimits.FileSize>>20, msg)
	}
	return msg, false, nil
}

// caseVerdict turns a test case's run into its verdict.
func caseVerdict(res *sandbox.Result, mode, want string) caseResult {
	cr := caseResult{
		CPUTimeMS:       res.CPUTime.Milliseconds(),
		WallTimeMS:      res.WallTime.Milliseconds(),
		MemoryPeakBytes: res.MemoryPeak,
		ExitCode:        res.ExitCode,
	}
	cr.Signal = res.SignalName()
	switch res.Status {
	case sandbox.OK:
		if outputMatches(mode, res.Stdout, want) {
			cr.Verdict = verdictAccepted
			return cr
		}
		cr.Verdict = verdictWrongAnswer
	case sandbox.CPUTimeLimit, sandbox.WallTimeLimit:
		cr.Verdict = verdictTimeLimit
	case sandbox.MemoryLimit:
		cr.Verdict = verdictMemoryLimit
	case sandbox.OutputLimit, sandbox.FileSizeLimit:
		cr.Verdict = verdictOutputLimit
	default: // NonZeroExit, Signaled
		cr.Verdict = verdictRuntimeError
	}
	cr.Stdout = excerpt(res.Stdout, maxCaseOutput)
	cr.Stderr = excerpt(res.Stderr, maxCaseOutput)
	return cr
}

// excerpt returns at most n bytes of b as a string, marking a cut. Invalid
// UTF-8 (a rune cut in two included) becomes U+FFFD, so that the JSON answer
// stays readable.
func excerpt(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return strings.ToValidUTF8(string(b[:n]), "\uFFFD") + "\n[... truncated]"
}
