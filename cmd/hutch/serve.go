package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// publish is one --publish: a host port (0: any free one) forwarded to a
// port in the sandbox.
type publish struct{ host, sandbox int }

// parsePublish parses PORT or HOST:PORT.
func parsePublish(s string) (publish, error) {
	h, c, two := strings.Cut(s, ":")
	if !two {
		c, h = h, "0"
	}
	hp, err1 := strconv.Atoi(h)
	cp, err2 := strconv.Atoi(c)
	if err1 != nil || err2 != nil || hp < 0 || hp > 65535 || cp <= 0 || cp > 65535 {
		return publish{}, fmt.Errorf("%q is not PORT or HOST_PORT:PORT", s)
	}
	return publish{host: hp, sandbox: cp}, nil
}

// runPublished runs cmd as the main process of a long-lived sandbox whose
// ports are forwarded to the host's 127.0.0.1, prints each host address,
// and waits for the process to end.
func runPublished(ctx context.Context, cmd *sandbox.Cmd, pubs []publish, stderr io.Writer) (*sandbox.Result, error) {
	sb, err := sandbox.New(ctx, cmd.Image, &sandbox.Config{
		Limits:        cmd.Limits,
		Hostname:      cmd.Hostname,
		Binds:         cmd.Binds,
		Network:       cmd.Network,
		WritableLayer: cmd.WritableLayer,
	})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	for _, p := range pubs {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p.host))
		if err != nil {
			return nil, err
		}
		if err := sb.ForwardListener(ctx, l, p.sandbox); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "hutch: published %s -> sandbox port %d\n", l.Addr(), p.sandbox)
	}
	main := sb.Command(cmd.Args...)
	main.Env, main.Dir, main.Stdin, main.Stdout, main.Stderr = cmd.Env, cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr
	main.Credential, main.Syscalls = cmd.Credential, cmd.Syscalls
	main.Limits = sandbox.Limits{CPUTime: cmd.Limits.CPUTime, WallTime: cmd.Limits.WallTime, Output: cmd.Limits.Output,
		FileSize: cmd.Limits.FileSize, OpenFiles: cmd.Limits.OpenFiles, Stack: cmd.Limits.Stack}
	return main.Run(ctx)
}

// cmdGC is `hutch gc`: remove what crashed users of hutch left behind.
func cmdGC(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "hutch gc: takes no arguments")
		return 2
	}
	rep, err := sandbox.CollectGarbage()
	for _, c := range rep.Cgroups {
		fmt.Fprintln(stdout, "removed cgroup", c)
	}
	for _, l := range rep.Locks {
		fmt.Fprintln(stdout, "removed lock", l)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hutch gc: %v\n", err)
		return exitHutch
	}
	if len(rep.Cgroups)+len(rep.Locks) == 0 {
		fmt.Fprintln(stdout, "no runtime leftovers")
	}
	// The image store's garbage too, where there is a store.
	if dir := rootfs.DefaultStoreDir(); dirExists(dir) {
		s, err := rootfs.OpenStore(dir)
		if err != nil {
			fmt.Fprintf(stderr, "hutch gc: %v\n", err)
			return exitHutch
		}
		defer s.Close()
		if err := gc(context.Background(), s, stdout); err != nil {
			fmt.Fprintf(stderr, "hutch gc: %v\n", err)
			return exitHutch
		}
	}
	return 0
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
