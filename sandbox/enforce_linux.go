package sandbox

import (
	"bufio"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hutchbox/hutch/cgroup"
	"github.com/hutchbox/hutch/internal/forkexec"
)

// enforcement is how a run's limits are held: its cgroup's resources, the
// command's rlimits, and the record of both for Result.Enforced.
type enforcement struct {
	cgroup    bool
	resources cgroup.Resources
	rlimits   []forkexec.Rlimit
	enforced  map[string]string
	// guessed: cgroup was chosen before this process knew whether it can
	// make groups; the run's own group tells (see cgroupGuess).
	guessed bool
}

// Whether this process can make cgroups, once known: from a probe (a group
// made and removed, cgroup.Enabled), or from the first group a cold run
// made on a guess. A process that runs one sandbox (the hutch command)
// thus makes one group, not three: the probe was a sixth of its run's
// preparation.
var cgroupState struct {
	sync.Mutex
	known bool
	err   error
}

// cgroupErr is whether this process can make cgroups, probed unless known.
func cgroupErr() error {
	cgroupState.Lock()
	defer cgroupState.Unlock()
	if !cgroupState.known {
		cgroupState.err, cgroupState.known = cgroup.Enabled(), true
	}
	return cgroupState.err
}

// cgroupGuess is cgroupErr without the probe. While nothing is known yet
// it reports whether cgroups look usable (cgroup.Available), with known
// false: the caller makes its group on that guess, and tells
// (cgroupLearned, or cgroupErr when it failed).
func cgroupGuess() (err error, known bool) {
	cgroupState.Lock()
	defer cgroupState.Unlock()
	if !cgroupState.known {
		if err := cgroup.Available(); err != nil {
			cgroupState.err, cgroupState.known = err, true
		}
	}
	return cgroupState.err, cgroupState.known
}

// cgroupLearned records that a group made on a guess was made.
func cgroupLearned() {
	cgroupState.Lock()
	defer cgroupState.Unlock()
	if !cgroupState.known {
		cgroupState.err, cgroupState.known = nil, true
	}
}

// enforce decides how each limit is enforced. It fails, before anything
// is created, on an rlimit this process cannot grant and, with Strict, on a
// limit the caller set that it cannot enforce as documented (the default
// Pids limit alone does not make Strict fail). With guess, a cgroup is
// chosen where one looks possible before that is known (see cgroupGuess).
func enforce(l Limits, guess bool) (*enforcement, error) {
	e := &enforcement{enforced: map[string]string{}}
	explicitPids := l.Pids > 0
	l = l.withDefaults()
	needCgroup := l.Memory > 0 || l.Pids > 0 || l.CPUs > 0 || l.CPUTime > 0
	if needCgroup {
		var err error
		if guess {
			var known bool
			err, known = cgroupGuess()
			e.guessed = err == nil && !known
		} else {
			err = cgroupErr()
		}
		if err == nil {
			e.cgroup = true
		} else if l.Strict && (l.Memory > 0 || explicitPids || l.CPUs > 0 || l.CPUTime > 0) {
			return nil, &ConfigError{Field: "Limits.Strict", Reason: "Memory, Pids, CPUs and CPUTime need a cgroup, and none can be made here: " + err.Error()}
		}
	}
	set := func(name, how string) { e.enforced[name] = how }
	if e.cgroup {
		if l.Memory > 0 {
			e.resources.Memory = &l.Memory
			set("Memory", "cgroup")
		}
		pids := l.Pids
		e.resources.Pids = &pids
		set("Pids", "cgroup")
		if l.CPUs > 0 {
			cpus := l.CPUs
			e.resources.CPUs = &cpus
			set("CPUs", "cgroup")
		}
	} else {
		if l.Memory > 0 {
			set("Memory", "rlimit")
		}
		set("Pids", "none")
		if l.CPUs > 0 {
			set("CPUs", "none")
		}
	}

	add := func(field string, res int, cur, max uint64, explicit bool) error {
		hard := hardLimit(res)
		if max > hard {
			if explicit && !hasCapSysResource() {
				return &ConfigError{Field: "Limits." + field, Reason: "value " + strconv.FormatUint(cur, 10) +
					" is above this process's hard limit " + strconv.FormatUint(hard, 10) + " (raising it needs CAP_SYS_RESOURCE)"}
			}
			if !hasCapSysResource() {
				cur, max = min(cur, hard), hard
			}
		}
		e.rlimits = append(e.rlimits, forkexec.Rlimit{Resource: res, Cur: cur, Max: max})
		return nil
	}
	nofile, explicit := uint64(l.OpenFiles), l.OpenFiles > 0
	if !explicit {
		nofile = DefaultOpenFiles
	}
	if err := add("OpenFiles", unix.RLIMIT_NOFILE, nofile, nofile, explicit); err != nil {
		return nil, err
	}
	set("OpenFiles", "rlimit")
	stack, explicit := uint64(l.Stack), l.Stack > 0
	if !explicit {
		stack = DefaultStack
	}
	if err := add("Stack", unix.RLIMIT_STACK, stack, stack, explicit); err != nil {
		return nil, err
	}
	set("Stack", "rlimit")
	if l.FileSize > 0 {
		if err := add("FileSize", unix.RLIMIT_FSIZE, uint64(l.FileSize), uint64(l.FileSize), true); err != nil {
			return nil, err
		}
		set("FileSize", "rlimit")
	}
	if l.CPUTime > 0 {
		// The backstop: SIGXCPU one second past the limit, SIGKILL a
		// second later. The cgroup watchdog normally acts first.
		secs := uint64(math.Ceil(l.CPUTime.Seconds())) + 1
		if err := add("CPUTime", unix.RLIMIT_CPU, secs, secs+1, true); err != nil {
			return nil, err
		}
		if e.cgroup {
			set("CPUTime", "cgroup+rlimit")
		} else {
			set("CPUTime", "rlimit")
		}
	}
	if l.Memory > 0 && !e.cgroup {
		// Address space, not resident memory: the closest an rlimit gets.
		if err := add("Memory", unix.RLIMIT_AS, uint64(l.Memory), uint64(l.Memory), true); err != nil {
			return nil, err
		}
	}
	if l.WallTime > 0 {
		set("WallTime", "watchdog")
	}
	set("Output", "watchdog")
	set("Disk", "tmpfs")
	return e, nil
}

func hardLimit(res int) uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(res, &rl); err != nil {
		return math.MaxUint64
	}
	return rl.Max
}

// hasCapSysResource reports whether this process may raise hard rlimits.
var hasCapSysResource = sync.OnceValue(func() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
})
