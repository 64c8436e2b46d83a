package sandbox_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// Run a shell command on the host's own /usr, read-only, in fresh
// namespaces.
func ExampleRun() {
	res, err := sandbox.Run(context.Background(), rootfs.Host(),
		[]string{"sh", "-c", "echo hello from $(hostname), pid $$"},
		sandbox.Limits{WallTime: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Status, ": ", string(res.Stdout))
	// Output: ok: hello from hutch, pid 2
}

// A Cmd adds standard input, environment, working directory and more.
func ExampleCmd_Run() {
	cmd := &sandbox.Cmd{
		Image:  rootfs.Host(),
		Args:   []string{"sh", "-c", "tr a-z A-Z; echo $GREETING from $(pwd)"},
		Stdin:  strings.NewReader("shout\n"),
		Env:    []string{"GREETING=hi"},
		Dir:    "/tmp",
		Limits: sandbox.Limits{WallTime: 5 * time.Second, Output: 1 << 20},
	}
	res, err := cmd.Run(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))
	// Output:
	// SHOUT
	// hi from /tmp
}
