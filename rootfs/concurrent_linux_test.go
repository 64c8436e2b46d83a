package rootfs_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
)

// bigImage is busybox plus a layer holding 8 MiB of random data, the same
// in every process.
func bigImage(t testing.TB) (v1.Image, [32]byte) {
	t.Helper()
	data := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{'h', 'u', 't', 'c', 'h'}).Read(data)
	return image(t, v1.Config{}, layer(t, busyboxTar(t)), layer(t, makeTar(t, file("big", string(data))))), sha256.Sum256(data)
}

// helper re-runs the test binary as another process that uses the store.
func helper(t *testing.T, mode, store, src string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	// The helper's own temporary directories go under this test's: it
	// exits (or is killed) without running its cleanups.
	cmd.Env = append(os.Environ(), "HUTCH_TEST_HELPER="+mode, "HUTCH_TEST_STORE="+store, "HUTCH_TEST_SRC="+src, "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	return cmd
}

// TestHelperProcess is the other process of the tests that need one.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("HUTCH_TEST_HELPER")
	if mode == "" {
		t.Skip("only run by other tests")
	}
	s, err := rootfs.OpenStore(os.Getenv("HUTCH_TEST_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "import":
		waitFor(os.Getenv("HUTCH_TEST_SRC") + ".go")
		_, err = s.Import(ctx, "oci:"+os.Getenv("HUTCH_TEST_SRC"), "shared")
	case "crash":
		img, _ := bigImage(t)
		_, err = s.ImportImage(ctx, "crashy", killImage{Image: img})
		err = fmt.Errorf("still alive: %v", err)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// waitFor waits for a file to exist: a start line for racing importers.
func waitFor(path string) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
}

// TestConcurrentImport imports the same image four times at once, from
// two goroutines and two processes, into one store: it ends with one copy
// of each layer and nothing else.
func TestConcurrentImport(t *testing.T) {
	img, sum := bigImage(t)
	src := writeLayout(t, img, "v1")
	dir := filepath.Join(t.TempDir(), "store")
	s, err := rootfs.OpenStore(dir)
	require.NoError(t, err)
	defer s.Close()

	var procs []*exec.Cmd
	for range 2 {
		cmd := helper(t, "import", dir, src)
		require.NoError(t, cmd.Start())
		procs = append(procs, cmd)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := rootfs.OpenStore(dir)
			if err == nil {
				defer s.Close()
				waitFor(src + ".go")
				_, err = s.Import(ctx, "oci:"+src, "shared")
			}
			errs[i] = err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them all reach the start line
	writeFile(t, src+".go", nil)
	wg.Wait()
	for _, p := range procs {
		assert.NoError(t, p.Wait())
	}
	for _, err := range errs {
		assert.NoError(t, err)
	}

	assert.Len(t, entries(t, s, "layers/sha256"), 2, "one copy of each layer")
	assert.Len(t, entries(t, s, "blobs/sha256"), 4, "two layers, a config, a manifest")
	assert.Equal(t, []string{"shared:latest.json"}, entries(t, s, "images"))
	assert.Empty(t, entries(t, s, "tmp"))
	spec, err := s.Image("shared").Resolve()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(spec.Layers[0], "big"))
	require.NoError(t, err)
	assert.Equal(t, sum, sha256.Sum256(b))
}

// killImage kills its process halfway through reading its big layer.
type killImage struct{ v1.Image }

func (k killImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := k.Image.LayerByDigest(h)
	return killLayer{l}, err
}

type killLayer struct{ v1.Layer }

func (k killLayer) Compressed() (io.ReadCloser, error) {
	rc, err := k.Layer.Compressed()
	return &killReader{ReadCloser: rc}, err
}

type killReader struct {
	io.ReadCloser
	n int
}

func (k *killReader) Read(p []byte) (int, error) {
	n, err := k.ReadCloser.Read(p)
	if k.n += n; k.n > 4<<20 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	}
	return n, err
}

// TestCrashMidImport kills a process while it unpacks a layer: nothing it
// left looks complete, GC clears it up, and the next import works.
func TestCrashMidImport(t *testing.T) {
	img, sum := bigImage(t)
	dir := filepath.Join(t.TempDir(), "store")
	err := helper(t, "crash", dir, "").Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the helper died: %v", err)
	require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal())

	s, err := rootfs.OpenStore(dir)
	require.NoError(t, err)
	defer s.Close()
	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	bigLayer := cfg.RootFS.DiffIDs[1].Hex
	assert.NoDirExists(t, filepath.Join(dir, "layers/sha256", bigLayer), "no partial layer")
	assert.Empty(t, entries(t, s, "images"))
	assert.NotEmpty(t, entries(t, s, "tmp"), "the crash left its work directory")
	_, err = s.Image("crashy").Resolve()
	assert.Error(t, err)

	res, err := s.GC(ctx)
	require.NoError(t, err)
	assert.Positive(t, res.Temp)
	assert.Empty(t, entries(t, s, "tmp"))

	_, err = s.ImportImage(ctx, "crashy", img)
	require.NoError(t, err)
	spec, err := s.Image("crashy").Resolve()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(spec.Layers[0], "big"))
	require.NoError(t, err)
	assert.Equal(t, sum, sha256.Sum256(b))
}
