//go:build !linux

// Command compare is the side-by-side benchmark of hutch against other
// sandboxing tools. It needs Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "compare: Linux only")
	os.Exit(1)
}
