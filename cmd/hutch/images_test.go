package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/testenv"
)

// busyboxTarball writes a gzip tarball of a busybox root filesystem.
func busyboxTarball(t *testing.T) string {
	t.Helper()
	root := testenv.BusyboxRoot(t)
	path := filepath.Join(t.TempDir(), "busybox.tar.gz")
	out, err := exec.Command("tar", "-C", root, "-czf", path, ".").CombinedOutput()
	if err != nil {
		t.Skipf("needs tar to make a test image: %v: %s", err, out)
	}
	return path
}

func TestImageCommands(t *testing.T) {
	testenv.RequireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	tarPath := busyboxTarball(t)
	st := "--store=" + store

	code, out, errOut := hutch(t, "", "import", st, "rootfs-tar:"+tarPath, "bb")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^bb:latest sha256:[0-9a-f]{64}\n$`, out)
	assert.Contains(t, errOut, "1/1 layers", "a progress bar")

	code, out, _ = hutch(t, "", "images", st)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^NAME +ID +CREATED +SIZE +LAYERS\nbb:latest +[0-9a-f]{12} .* 1$`, out)

	// Run, print the diff and commit; run the commit.
	code, out, errOut = hutch(t, "", "run", st, "--image", "bb", "--user", "0", "--diff", "--commit", "bb:2", "--",
		"sh", "-c", "echo hi > /etc/hi; rm /etc/group; echo ran")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "ran\n", out)
	assert.Contains(t, errOut, "C /etc\nD /etc/group\nA /etc/hi\n")
	assert.Contains(t, errOut, "hutch: committed bb:2 (sha256:")
	code, out, errOut = hutch(t, "", "run", st, "--image", "bb:2", "--", "sh", "-c", "cat /etc/hi; test -e /etc/group || echo gone")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "hi\ngone\n", out)
	entries, err := os.ReadDir(filepath.Join(store, "tmp"))
	require.NoError(t, err)
	assert.Empty(t, entries, "the writable layer is removed")

	// --diff works on any image.
	code, _, errOut = hutch(t, "", "run", "--image", testenv.BusyboxRoot(t), "--user", "0", "--diff", "--", "touch", "/new")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "A /new\n", errOut)

	// Export, read it back, import it again.
	export := filepath.Join(t.TempDir(), "export")
	code, _, errOut = hutch(t, "", "export", st, "bb:2", export)
	require.Equal(t, 0, code, errOut)
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		b, err := exec.Command(skopeo, "inspect", "oci:"+export+":2").Output()
		require.NoError(t, err)
		var inspect struct{ Layers []string }
		require.NoError(t, json.Unmarshal(b, &inspect))
		assert.Len(t, inspect.Layers, 2)
	}
	code, _, errOut = hutch(t, "", "import", st, "-q", "oci:"+export+":2", "again")
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, errOut, "-q: no progress")

	// Pull from a registry.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/hutch/busybox:1"
	layer, err := tarball.LayerFromFile(tarPath)
	require.NoError(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	require.NoError(t, err)
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	require.NoError(t, remote.Write(tag, img))
	code, out, errOut = hutch(t, "", "pull", st, ref)
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, ref+" sha256:"), out)
	assert.Contains(t, errOut, ref+" [")
	code, out, errOut = hutch(t, "", "run", st, "--image", ref, "--", "hostname")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "hutch\n", out)

	// Remove: the layers go with the last image that used them.
	code, out, errOut = hutch(t, "", "rmi", st, "bb", "bb:2", "again")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "removed bb\nremoved bb:2\nremoved again\nfreed ")
	code, out, _ = hutch(t, "", "images", st, "-q")
	require.Equal(t, 0, code)
	assert.Equal(t, ref+"\n", out)
	code, _, errOut = hutch(t, "", "rmi", st, "bb")
	assert.Equal(t, exitHutch, code)
	assert.Contains(t, errOut, "no image bb in the store")
}

func TestImageCommandErrors(t *testing.T) {
	store := "--store=" + filepath.Join(t.TempDir(), "store")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"import", store, "oci:/nowhere"}, 2, "wrong number of arguments"},
		{[]string{"import", store, "zip:/x", "name"}, exitHutch, "unknown transport"},
		{[]string{"import", store, "rootfs-tar:/nowhere", "name"}, exitHutch, "no such file"},
		{[]string{"pull", store}, 2, "Usage: hutch pull"},
		{[]string{"pull", store, "--platform", "linux", "x"}, exitHutch, "not os/arch"},
		{[]string{"export", store, "nope", t.TempDir()}, exitHutch, "nope:latest: file does not exist"},
		{[]string{"rmi", store}, 2, "wrong number of arguments"},
		{[]string{"images", "--store", "/proc/nope"}, exitHutch, "store"},
		{[]string{"run", store, "--image", "nope", "--", "true"}, exitHutch, `no image "nope" in the store`},
		{[]string{"run", store, "--image", "host", "--commit", "x", "--", "true"}, exitHutch, "--commit needs an image from the store"},
	}
	for _, tc := range tests {
		code, _, errOut := hutch(t, "", tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.stderr, tc.args)
	}
}
