package sandbox_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

func TestHostImage(t *testing.T) {
	img := rootfs.Host()
	requireSandbox(t, img)
	t.Run("only the host's system dirs and a generated etc", func(t *testing.T) {
		res := sh(t, img, "ls /etc | sort | tr '\\n' ' '; echo; head -1 /etc/passwd; touch /usr/x 2>/dev/null || echo usr read-only")
		assert.Equal(t, sandbox.OK, res.Status, "stderr: %s", res.Stderr)
		out := string(res.Stdout)
		assert.Contains(t, out, "group hosts")
		assert.Contains(t, out, "root:x:0:0:root:/root:/bin/sh\n")
		assert.Contains(t, out, "usr read-only\n")
		assert.NotContains(t, out, "shadow")
	})
	t.Run("python", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/python3"); err != nil {
			t.Skip("needs /usr/bin/python3 on the host")
		}
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"python3", "-c", "import socket; print(6*7, socket.gethostname())"}})
		assert.Equal(t, "42 hutch\n", string(res.Stdout), "stderr: %s", res.Stderr)
	})
	t.Run("c compiler", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/gcc"); err != nil {
			t.Skip("needs /usr/bin/gcc on the host")
		}
		src := "#include <stdio.h>\nint main(void){printf(\"%d\\n\", 6*7);return 0;}\n"
		res := run(t, &sandbox.Cmd{Image: img, Args: []string{"sh", "-c", "cd /tmp && cat > a.c && cc -O2 -o a a.c && ./a"},
			Stdin: strings.NewReader(src)})
		assert.Equal(t, "42\n", string(res.Stdout), "stderr: %s", res.Stderr)
	})
}
