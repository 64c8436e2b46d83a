package main

import "bytes"

// Comparison modes of a submission's "compare" field.
const (
	compareExact      = "exact"
	compareWhitespace = "whitespace"
)

// outputMatches says whether a program's output is the expected one.
//
// "exact" compares bytes. "whitespace" compares the sequences of
// whitespace-separated tokens, so that trailing spaces, a missing final
// newline, CRLF line ends or a different layout of the same tokens do not
// matter (what most judges call a token checker).
func outputMatches(mode string, got []byte, want string) bool {
	if mode == compareExact {
		return string(got) == want
	}
	g, w := bytes.Fields(got), bytes.Fields([]byte(want))
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if !bytes.Equal(g[i], w[i]) {
			return false
		}
	}
	return true
}
