package cgroup_test

import (
	"errors"
	"fmt"
	"log"
	"os/exec"
	"time"

	"github.com/hutchbox/hutch/cgroup"
)

// A command run with 256 MiB of memory, 64 tasks and half a CPU, and a
// CPU-time watchdog, then what it used.
func Example() {
	if err := cgroup.Enabled(); err != nil {
		log.Printf("running without cgroups: %v", err)
		return
	}
	mem, pids, cpus := int64(256<<20), int64(64), 0.5
	m, err := cgroup.New(cgroup.Config{
		Name:      "example-1",
		Resources: cgroup.Resources{Memory: &mem, Pids: &pids, CPUs: &cpus},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Delete()
	defer m.Kill()

	// A real sandbox holds the child back until it is in the group (or
	// uses OpenDir and CLONE_INTO_CGROUP on v2); this sketch does not.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if err := m.AddProc(cmd.Process.Pid); err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				log.Fatal(err)
			}
			break wait
		case <-tick.C:
			if used, err := m.CPUUsage(); err == nil && used > 2*time.Second {
				m.Kill() // time limit exceeded
			}
		}
	}

	st, err := m.Stat(cgroup.StatAll)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cgroup %v: CPU %v, peak memory %d KiB, OOM kills %d\n",
		m.Mode(), st.CPUUsage, st.MemoryPeak>>10, st.OOMKills)
}

// Limits can be left out: a group without them still accounts for what its
// processes use.
func ExampleNew() {
	m, err := cgroup.New(cgroup.Config{Parent: "judge", Name: "submission-42"})
	if err != nil {
		log.Fatal(err) // errors.Is(err, fs.ErrPermission) when not root
	}
	fmt.Println(m.Path()) // /judge/submission-42
	if err := m.Delete(); err != nil {
		log.Fatal(err)
	}
}
