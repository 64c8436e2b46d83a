package mknetns

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Make returns a new network namespace and leaves every thread of the
// process in its own.
func TestMake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	fd := Make()
	if fd < 0 {
		t.Fatal("no namespace made")
	}
	defer syscall.Close(fd)
	made, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	if made == own {
		t.Fatalf("Make returned this process's own namespace %s", own)
	}
	threads, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		if ns, err := os.Readlink(th); err == nil && ns != own {
			t.Errorf("%s is in %s, not %s", th, ns, own)
		}
	}
}
