// Package escape is the shared vocabulary of hutch's escape test suite:
// the verdicts an attacker reports and the one line it prints them on.
//
// The attacks themselves are one static program, escape/attacker, that a
// test copies into a sandbox image and runs by name; the table that runs
// them and asserts each safe outcome is sandbox/escape_linux_test.go.
package escape

import (
	"bufio"
	"bytes"
	"strings"
)

// Verdict is what an attacker concluded about its attack.
type Verdict string

// The verdicts.
const (
	// Blocked: the dangerous thing did not happen.
	Blocked Verdict = "blocked"
	// Escaped: the dangerous thing happened (or the capability to do it
	// was shown, e.g. a global knob opened for writing).
	Escaped Verdict = "escaped"
	// Done: the attack ran, and only the host can tell whether it did
	// harm (the host's hostname, a file on a bind's host side).
	Done Verdict = "done"
	// Error: the attack could not be carried out, so it proves nothing.
	Error Verdict = "error"
	// Skip: the attack has no meaning here (another architecture).
	Skip Verdict = "skip"
)

// prefix starts the result line.
const prefix = "RESULT "

// Format returns the result line for v: "RESULT <verdict> <detail>\n",
// with the detail folded onto one line.
func Format(v Verdict, detail string) string {
	detail = strings.Join(strings.Fields(detail), " ")
	return prefix + string(v) + " " + detail + "\n"
}

// Parse finds the last result line in an attacker's output. ok is false
// when there is none.
func Parse(out []byte) (v Verdict, detail string, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), prefix)
		if !found {
			continue
		}
		verdict, d, _ := strings.Cut(rest, " ")
		v, detail, ok = Verdict(verdict), d, true
	}
	return v, detail, ok
}
