package sandbox_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the program the accuracy tests run inside a
// sandbox: with HUTCH_TEST_HELPER set, TestMain runs that helper instead
// of the tests. It is bound into the host image, which has the libraries a
// dynamically linked test binary needs.
func TestMain(m *testing.M) {
	if h := os.Getenv("HUTCH_TEST_HELPER"); h != "" {
		os.Exit(helper(h, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helper(name string, args []string) int {
	arg := func(i int) int {
		n, err := strconv.Atoi(args[i])
		if err != nil {
			panic(err)
		}
		return n
	}
	switch name {
	case "spin": // spin THREADS MILLISECONDS: burn CPU time, print own rusage in ns
		threads, ms := arg(0), arg(1)
		runtime.GOMAXPROCS(threads + 1)
		target := time.Duration(ms) * time.Millisecond
		done := make(chan struct{})
		for range threads {
			go func() {
				x := 0
				for {
					for i := range 1 << 16 {
						x += i * i
					}
					if selfCPU() >= target {
						done <- struct{}{}
						return
					}
				}
			}()
		}
		for range threads {
			<-done
		}
		fmt.Println(int64(selfCPU()))
	case "loop": // burn CPU forever
		//lint:ignore SA5002 spinning is the point
		for {
		}
	case "touch": // touch MIB: allocate and touch MiB of memory, then exit
		b := make([]byte, arg(0)<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("touched", len(b)>>20)
		runtime.KeepAlive(b)
	case "shm": // print how many SysV shared memory segments there are, then make one
		b, err := os.ReadFile("/proc/sysvipc/shm")
		if err != nil {
			panic(err)
		}
		fmt.Println(strings.Count(string(b), "\n") - 1) // less the header
		if _, _, errno := syscall.Syscall(syscall.SYS_SHMGET, 0 /* IPC_PRIVATE */, 4096, 0o1600 /* IPC_CREAT|0600 */); errno != 0 {
			panic(errno)
		}
	case "hold-sandboxes":
		return holdSandboxes()
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", name)
		return 2
	}
	return 0
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
