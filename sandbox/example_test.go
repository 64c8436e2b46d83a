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

// A long-lived sandbox: commands run in it one after the other, sharing its
// root filesystem, as with docker exec.
func ExampleNew() {
	ctx := context.Background()
	sb, err := sandbox.New(ctx, rootfs.Host(), &sandbox.Config{Hostname: "svc"})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	if err := sb.WriteFile("/tmp/greeting", []byte("hello"), 0o644); err != nil {
		log.Fatal(err)
	}
	res, err := sb.Exec(ctx, "sh", "-c", "cat /tmp/greeting; echo \" from $(hostname)\"")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))
	// Output: hello from svc
}

// A pool sets sandboxes up ahead; each run still gets a fresh one.
func ExampleNewPool() {
	pool, err := sandbox.NewPool(rootfs.Host(), 2, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	for _, n := range []string{"1", "2"} {
		res, err := pool.Run(context.Background(), &sandbox.Cmd{
			Args:   []string{"sh", "-c", "echo run " + n + " is pid $$; ls /tmp | wc -l; touch /tmp/mark"},
			Limits: sandbox.Limits{WallTime: 5 * time.Second},
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(string(res.Stdout))
	}
	// Output:
	// run 1 is pid 2
	// 0
	// run 2 is pid 2
	// 0
}
