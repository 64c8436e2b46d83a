//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// stats are a contender's numbers; ok is false when it has none.
type stats struct {
	ok                bool
	latMed, latP90    float64 // ms
	thrMed, thrMin    float64 // runs/s
	thrMax            float64
	latRuns, thrCount int
	idleMed           float64 // ms; 0 when not measured
	idleRuns          int
}

func (c *contender) stats() stats {
	if c.err != nil || len(c.lat) == 0 || len(c.thr) == 0 {
		return stats{}
	}
	lat := slices.Clone(c.lat)
	slices.Sort(lat)
	thr := slices.Clone(c.thr)
	slices.Sort(thr)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var idleMed float64
	if len(c.idleLat) > 0 {
		idle := slices.Clone(c.idleLat)
		slices.Sort(idle)
		idleMed = ms(median(idle))
	}
	return stats{
		ok:       true,
		idleMed:  idleMed,
		idleRuns: len(c.idleLat),
		latMed:   ms(median(lat)),
		latP90:   ms(lat[(len(lat)*9)/10]),
		thrMed:   median(thr),
		thrMin:   thr[0],
		thrMax:   thr[len(thr)-1],
		latRuns:  len(lat),
		thrCount: len(thr),
	}
}

// median of a sorted slice.
func median[T time.Duration | float64](s []T) T {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func find(cs []*contender, name string) *contender {
	for _, c := range cs {
		if c.name == name {
			return c
		}
	}
	return nil
}

func ratio(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// render is the markdown report.
func render(cs []*contender, idleRSS int64, idleErr error) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	command := *flagCommand
	if command == "" {
		command = shellJoin(os.Args)
	}

	p("# hutch vs. other sandboxes: /bin/true from a busybox rootfs\n\n")
	p("- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("- Machine: %d CPUs (nproc), %s, kernel %s, cgroups %s\n", runtime.NumCPU(), cpuModel(), kernel(), cgroupLayout())
	p("- Command: `%s`\n", command)
	if *flagCommand != "" {
		p("- Harness: `%s`\n", shellJoin(os.Args))
	}
	p("- Versions: %s\n", versions())
	p("- Method: rounds: %d; in each round every contender, in an order rotated from round to round, "+
		"does sequential single runs for %s (at least %d), %d single runs each after %s of idleness, "+
		"and then runs with %d concurrent workers for %s. "+
		"Latency is the median of all sequential runs; runs/s is the median over rounds (range in the notes). "+
		"Every contender was checked first: /bin/true exits 0 and, for the sandboxes, `sh -c 'echo $$'` prints a small PID.\n",
		*flagRounds, *flagLatency, minLatencyRuns, *flagIdleRuns, *flagIdleGap, *flagWorkers, *flagDuration)
	p("- Ratios are contender ÷ baseline, measured in this same run: for throughput above 1 is faster, for latency below 1 is faster. " +
		"Report ratios, not absolute numbers: the machine is noisy.\n\n")

	base := find(cs, "plain exec")
	bwrap := find(cs, "bubblewrap")
	var bs, ws stats
	if base != nil {
		bs = base.stats()
	}
	if bwrap != nil {
		ws = bwrap.stats()
	}

	p("| contender | median latency ms | after %s idle: median ms (vs bubblewrap) | runs/s (%d workers) | ratio vs plain exec (throughput) | ratio vs bubblewrap (throughput / latency) | notes |\n", *flagIdleGap, *flagWorkers)
	p("|---|---:|---:|---:|---:|---:|---|\n")
	var failed []*contender
	for _, c := range cs {
		s := c.stats()
		if !s.ok {
			failed = append(failed, c)
			why := "no numbers"
			if c.err != nil {
				why = c.err.Error()
			}
			p("| %s | – | – | – | – | – | **FAILED**: %s |\n", c.name, cell(why, 200))
			continue
		}
		var notes []string
		notes = append(notes, fmt.Sprintf("p90 %.2f ms over %d runs", s.latP90, s.latRuns))
		notes = append(notes, fmt.Sprintf("runs/s %.0f–%.0f over rounds", s.thrMin, s.thrMax))
		if c.name == "hutch-api" && c.harnessPeak > 0 {
			n := fmt.Sprintf("harness process peak RSS during its %d-worker runs %s (RSS at start %s)", *flagWorkers, mib(c.harnessPeak), mib(c.harnessBase))
			if base != nil && base.harnessPeak > 0 {
				n += fmt.Sprintf("; the same harness during plain exec's: %s", mib(base.harnessPeak))
			}
			notes = append(notes, n)
		}
		if c.fails > 0 {
			notes = append(notes, fmt.Sprintf("**%d of %d timed runs failed**, first: %s", c.fails, c.runs, cell(c.firstFail.Error(), 150)))
		}
		idle := "–"
		if s.idleRuns > 0 {
			idle = fmt.Sprintf("%.2f (%s)", s.idleMed, ratio(s.idleMed, ws.idleMed, ws.ok && ws.idleRuns > 0))
		}
		p("| %s | %.2f | %s | %.0f | %s | %s / %s | %s |\n", c.name, s.latMed, idle, s.thrMed,
			ratio(s.thrMed, bs.thrMed, bs.ok),
			ratio(s.thrMed, ws.thrMed, ws.ok), ratio(s.latMed, ws.latMed, ws.ok),
			strings.Join(notes, "; "))
	}

	p("\n## What each contender runs\n\n")
	for _, c := range cs {
		p("- **%s**: `%s`", c.name, c.cmdline)
		if len(c.notes) > 0 {
			p(" — %s", strings.Join(c.notes, "; "))
		}
		p("\n")
	}

	p("\n## Memory\n\n")
	if c := find(cs, "hutch-api"); c != nil && c.harnessPeak > 0 {
		p("- hutch-api: peak RSS of the harness process (which calls sandbox.Run in-process) during the %d-worker throughput runs: **%s** "+
			"(this is not the 100-idle-sandboxes figure below).\n", *flagWorkers, mib(c.harnessPeak))
	}
	if idleErr != nil {
		p("- Peak RSS of the hutch process holding 100 idle sandboxes: not measured (%v).\n", idleErr)
	} else {
		p("- Peak RSS of the hutch process holding 100 idle sandboxes: %s.\n", mib(idleRSS))
		if len(idleMemory) == len(idleMemoryFields) {
			var kernel int64
			var parts []string
			for i, f := range idleMemoryFields[:len(idleMemoryFields)-1] {
				kernel += idleMemory[i]
				parts = append(parts, fmt.Sprintf("%s %d", f.name, idleMemory[i]))
			}
			p("- Kernel memory each idle sandbox holds (differences of /proc/meminfo over the 100, in KiB): **%d** (%s). "+
				"The machine's available memory (MemAvailable, which page cache moves too) fell by %d KiB per sandbox.\n",
				kernel, strings.Join(parts, ", "), idleMemory[len(idleMemory)-1])
		}
	}

	if len(failed) > 0 {
		p("\n## Failed contenders\n\n")
		for _, c := range failed {
			why := "no numbers"
			if c.err != nil {
				why = c.err.Error()
			}
			p("- **%s**: %s\n", c.name, why)
		}
	}
	return b.String()
}

// cell makes s safe for one markdown table cell, at most n bytes.
func cell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cgroupLayout() string {
	switch {
	case exists("/sys/fs/cgroup/cgroup.controllers"):
		return "v2 (unified)"
	case exists("/sys/fs/cgroup/unified/cgroup.controllers"):
		return "v1 (hybrid, v2 at /sys/fs/cgroup/unified)"
	default:
		return "v1"
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// versions is one line naming every tool's version.
func versions() string {
	vs := []string{"Go " + runtime.Version()}
	for _, t := range []struct{ name, arg string }{
		{"runc", "--version"}, {"crun", "--version"}, {"bwrap", "--version"}, {"unshare", "--version"},
		{*flagRootfs + "/bin/busybox", "--help"},
	} {
		out, err := execTool(context.Background(), []string{t.name, t.arg})
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		if err != nil && line == "" {
			continue
		}
		line = strings.TrimPrefix(line, "bubblewrap ")
		switch {
		case strings.HasPrefix(t.name, "bwrap"):
			line = "bubblewrap " + line
		case strings.HasSuffix(t.name, "busybox"):
			line, _, _ = strings.Cut(line, " multi-call")
		}
		vs = append(vs, line)
	}
	return strings.Join(vs, ", ")
}
