package rootfs_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/rootfs"
)

// testRegistry starts go-containerregistry's in-memory registry behind
// basic authentication, and points the Docker configuration at
// credentials for it. It returns the registry's host:port.
func testRegistry(t *testing.T) (host string, auth authn.Authenticator) {
	t.Helper()
	const user, pass = "hutch", "s3cret"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you?"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	cfg := filepath.Join(t.TempDir(), "docker")
	writeFile(t, filepath.Join(cfg, "config.json"), fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`,
		host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass))))
	t.Setenv("DOCKER_CONFIG", cfg)
	return host, &authn.Basic{Username: user, Password: pass}
}

func TestPull(t *testing.T) {
	host, auth := testRegistry(t)
	native := layeredImage(t)
	other := image(t, v1.Config{}, layer(t, busyboxTar(t)), layer(t, makeTar(t, file("arch", "other\n"))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "riscv64"}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := host + "/test/multi:v1"
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	require.NoError(t, remote.WriteIndex(r, idx, remote.WithAuth(auth)))
	nativeDigest, err := native.Digest()
	require.NoError(t, err)

	s := openStore(t)
	var mu sync.Mutex
	var reports []rootfs.Progress
	info, err := s.Pull(ctx, ref, rootfs.WithProgress(func(p rootfs.Progress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	}))
	require.NoError(t, err)
	assert.Equal(t, ref, info.Name)
	assert.Equal(t, nativeDigest.String(), info.Digest, "the index's entry for this platform")
	assert.Equal(t, host+"/test/multi:v1", info.Source)
	require.NotEmpty(t, reports)
	last := reports[len(reports)-1]
	assert.Equal(t, 3, last.Layers)
	assert.Equal(t, 3, last.LayersDone)
	assert.Equal(t, last.Total, last.Bytes)
	assert.Positive(t, last.Total)
	checkLayered(t, s.Image(ref))

	// By digest: nothing new to fetch.
	byDigest := host + "/test/multi@" + nativeDigest.String()
	reports = nil
	info, err = s.Pull(ctx, byDigest, rootfs.WithProgress(func(p rootfs.Progress) { reports = append(reports, p) }))
	require.NoError(t, err)
	assert.Equal(t, byDigest, info.Name)
	assert.True(t, reports[len(reports)-1].Cached)
	assert.Len(t, entries(t, s, "layers/sha256"), 3)

	// Another platform.
	_, err = s.Pull(ctx, ref, rootfs.WithPlatform("linux/riscv64"))
	require.NoError(t, err)
	assert.Equal(t, "other\n", run(t, s.Image(ref), "cat /arch"))
	_, err = s.Pull(ctx, ref, rootfs.WithPlatform("linux/s390x"))
	assert.ErrorContains(t, err, "no image for linux/s390x in the index (it has: linux/riscv64, linux/"+runtime.GOARCH+")")

	// Without credentials.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, err = s.Pull(ctx, ref)
	assert.ErrorContains(t, err, "UNAUTHORIZED")
	_, err = s.Pull(ctx, host+"/test/missing:v1", rootfs.WithKeychain(authn.NewMultiKeychain(staticKeychain{auth})))
	assert.ErrorContains(t, err, "NAME_UNKNOWN")
	assert.Empty(t, entries(t, s, "tmp"))
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

func TestPullUnreachable(t *testing.T) {
	s := openStore(t)
	_, err := s.Pull(ctx, "127.0.0.1:1/nothing:here")
	assert.ErrorContains(t, err, "connection refused")
	assertNothingStored(t, s)
}
