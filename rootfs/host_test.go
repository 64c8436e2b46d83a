package rootfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hutchbox/hutch/internal/state"
)

// useStateDir points hutch's state directory at a fresh temporary directory
// for the test, and returns it.
func useStateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(tempDir(t), "state")
	t.Setenv(state.EnvDir, d)
	return d
}

// tempDir returns a fresh temporary directory, symlink-free.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return d
}

// makeTree creates the tree that tree describes under root: a name ending in
// "/" is a directory, "-> target" a symbolic link (where "{root}" stands for
// root), anything else the content of a regular file.
func makeTree(t *testing.T, root string, tree map[string]string) {
	t.Helper()
	for name, what := range tree {
		path := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		switch {
		case strings.HasSuffix(name, "/"):
			require.NoError(t, os.MkdirAll(path, 0o755))
		case strings.HasPrefix(what, "-> "):
			target := strings.ReplaceAll(strings.TrimPrefix(what, "-> "), "{root}", root)
			require.NoError(t, os.Symlink(target, path))
		default:
			require.NoError(t, os.WriteFile(path, []byte(what), 0o644))
		}
	}
}

// describeTree describes the tree under root, one entry a name: "dir 0755",
// "-> target", or "file 0644 content".
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	tree := make(map[string]string)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode()
		perm := mode.Perm()
		if mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		switch {
		case mode.IsDir():
			tree[rel] = fmt.Sprintf("dir %04o", perm)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			tree[rel] = "-> " + target
		default:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			tree[rel] = fmt.Sprintf("file %04o %s", perm, data)
		}
		return nil
	})
	require.NoError(t, err)
	return tree
}

// skeletonBase is what every skeleton holds.
var skeletonBase = map[string]string{
	"usr":               "dir 0755",
	"dev":               "dir 0755",
	"proc":              "dir 0755",
	"home":              "dir 0755",
	"run":               "dir 0755",
	"var":               "dir 0755",
	"var/tmp":           "dir 1777",
	"tmp":               "dir 1777",
	"root":              "dir 0700",
	"etc":               "dir 0755",
	"etc/passwd":        "file 0644 " + etcPasswd,
	"etc/group":         "file 0644 " + etcGroup,
	"etc/hosts":         "file 0644 " + etcHosts,
	"etc/resolv.conf":   "file 0644 " + etcResolvConf,
	"etc/nsswitch.conf": "file 0644 " + etcNsswitch,
}

// plus returns base with more entries.
func plus(base map[string]string, more map[string]string) map[string]string {
	m := make(map[string]string, len(base)+len(more))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range more {
		m[k] = v
	}
	return m
}

// mergedHost is a merged-/usr host like Debian 12's.
var mergedHost = map[string]string{
	"usr/bin/":                "",
	"usr/bin/sh":              "#!",
	"usr/sbin/":               "",
	"usr/lib/":                "",
	"usr/lib64/":              "",
	"bin":                     "-> usr/bin",
	"sbin":                    "-> usr/sbin",
	"lib":                     "-> usr/lib",
	"lib64":                   "-> usr/lib64",
	"lib32":                   "-> usr/lib32", // dangling: left out
	"etc/ld.so.cache":         "fake ld.so.cache",
	"etc/alternatives/cc":     "-> /usr/bin/gcc-12",
	"etc/alternatives/awk":    "-> /usr/bin/mawk",
	"etc/alternatives/README": "not a link: left out",
	"etc/shadow":              "root:secret",
	"etc/hostname":            "host",
	"etc/ld.so.conf.d/x.conf": "/opt/lib",
	"home/user/.ssh/id_rsa":   "secret",
	"opt/lib/":                "",
	"root/.bash_history":      "secret",
	"var/lib/dpkg/status":     "",
	"tmp/host-file":           "",
	"proc/":                   "",
	"dev/":                    "",
}

func TestHostFake(t *testing.T) {
	tests := []struct {
		name     string
		host     map[string]string
		linkRoot bool // reach the host root through a symbolic link
		want     map[string]string
		binds    []Bind // Source relative to the host root
	}{
		{
			name: "merged",
			host: mergedHost,
			want: plus(skeletonBase, map[string]string{
				"bin":                  "-> usr/bin",
				"sbin":                 "-> usr/sbin",
				"lib":                  "-> usr/lib",
				"lib64":                "-> usr/lib64",
				"etc/ld.so.cache":      "file 0644 fake ld.so.cache",
				"etc/alternatives":     "dir 0755",
				"etc/alternatives/cc":  "-> /usr/bin/gcc-12",
				"etc/alternatives/awk": "-> /usr/bin/mawk",
			}),
			binds: []Bind{{Source: "usr", Target: "/usr"}},
		},
		{
			name:     "merged through a symlinked root",
			host:     mergedHost,
			linkRoot: true,
			want: plus(skeletonBase, map[string]string{
				"bin":                  "-> usr/bin",
				"sbin":                 "-> usr/sbin",
				"lib":                  "-> usr/lib",
				"lib64":                "-> usr/lib64",
				"etc/ld.so.cache":      "file 0644 fake ld.so.cache",
				"etc/alternatives":     "dir 0755",
				"etc/alternatives/cc":  "-> /usr/bin/gcc-12",
				"etc/alternatives/awk": "-> /usr/bin/mawk",
			}),
			binds: []Bind{{Source: "usr", Target: "/usr"}},
		},
		{
			name: "split",
			host: map[string]string{
				"usr/bin/":     "",
				"bin/sh":       "#!",
				"sbin/":        "",
				"lib/":         "",
				"lib32/":       "",
				"lib64":        "-> lib", // a link out of /usr: bound
				"libx32":       "a file: left out",
				"usr/lib/x.so": "",
			},
			want: plus(skeletonBase, map[string]string{
				"bin":   "dir 0755",
				"sbin":  "dir 0755",
				"lib":   "dir 0755",
				"lib32": "dir 0755",
				"lib64": "dir 0755",
			}),
			binds: []Bind{
				{Source: "usr", Target: "/usr"},
				{Source: "bin", Target: "/bin"},
				{Source: "sbin", Target: "/sbin"},
				{Source: "lib", Target: "/lib"},
				{Source: "lib32", Target: "/lib32"},
				{Source: "lib", Target: "/lib64"},
			},
		},
		{
			name: "partly merged",
			host: map[string]string{
				"usr/bin/":   "",
				"usr/lib/":   "",
				"bin":        "-> usr/bin",
				"sbin/":      "",
				"lib":        "-> {root}/usr/lib/../lib", // odd, but leads into /usr
				"etc/passwd": "host's: left out",
			},
			want: plus(skeletonBase, map[string]string{
				"bin":  "-> usr/bin",
				"sbin": "dir 0755",
				"lib":  "-> {root}/usr/lib/../lib",
			}),
			binds: []Bind{
				{Source: "usr", Target: "/usr"},
				{Source: "sbin", Target: "/sbin"},
			},
		},
		{
			name:  "empty",
			host:  map[string]string{},
			want:  skeletonBase,
			binds: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			useStateDir(t)
			root := tempDir(t)
			makeTree(t, root, tt.host)
			img := hostImage{root: root}
			if tt.linkRoot {
				link := filepath.Join(tempDir(t), "link")
				require.NoError(t, os.Symlink(root, link))
				img.root = link
			}

			spec, err := img.Resolve()
			require.NoError(t, err)
			require.Len(t, spec.Layers, 1)
			want := make(map[string]string)
			for name, what := range tt.want {
				want[name] = strings.ReplaceAll(what, "{root}", root)
			}
			assert.Equal(t, want, describeTree(t, spec.Layers[0]))

			var binds []Bind
			for _, b := range tt.binds {
				binds = append(binds, Bind{Source: filepath.Join(root, b.Source), Target: b.Target})
			}
			assert.Equal(t, binds, spec.Binds)
			checkSpec(t, spec)
		})
	}
}

// checkSpec checks what the sandbox relies on: absolute symlink-free
// layers and bind sources, and bind targets that exist in the layer as
// directories when their sources are.
func checkSpec(t *testing.T, spec *Spec) {
	t.Helper()
	require.NotEmpty(t, spec.Layers)
	for _, l := range spec.Layers {
		real, err := filepath.EvalSymlinks(l)
		require.NoError(t, err)
		assert.Equal(t, l, real, "layer %s is not symlink-free", l)
	}
	for _, b := range spec.Binds {
		real, err := filepath.EvalSymlinks(b.Source)
		require.NoError(t, err)
		assert.Equal(t, b.Source, real, "bind source %s is not symlink-free", b.Source)
		assert.False(t, b.Writable, "bind of %s is writable", b.Source)
		src, err := os.Stat(b.Source)
		require.NoError(t, err)
		dst, err := os.Lstat(filepath.Join(spec.Layers[0], b.Target))
		require.NoError(t, err, "bind target %s is missing", b.Target)
		assert.Equal(t, src.IsDir(), dst.IsDir(), "bind target %s", b.Target)
	}
}

func TestHostReal(t *testing.T) {
	useStateDir(t)
	spec, err := Host().Resolve()
	require.NoError(t, err)
	checkSpec(t, spec)
	skel := spec.Layers[0]

	usr, err := filepath.EvalSymlinks("/usr")
	require.NoError(t, err)
	require.NotEmpty(t, spec.Binds)
	assert.Equal(t, Bind{Source: usr, Target: "/usr"}, spec.Binds[0])

	bound := make(map[string]string)
	for _, b := range spec.Binds {
		bound[b.Target] = b.Source
	}
	for _, name := range hostDirs[1:] {
		host, err := os.Lstat("/" + name)
		if err != nil {
			_, err := os.Lstat(filepath.Join(skel, name))
			assert.ErrorIs(t, err, fs.ErrNotExist, "/%s is not on the host", name)
			continue
		}
		got, err := os.Lstat(filepath.Join(skel, name))
		require.NoError(t, err, "/%s is on the host", name)
		if host.Mode()&fs.ModeSymlink != 0 && got.Mode()&fs.ModeSymlink != 0 {
			want, _ := os.Readlink("/" + name)
			target, _ := os.Readlink(filepath.Join(skel, name))
			assert.Equal(t, want, target, "/%s", name)
			continue
		}
		assert.True(t, got.IsDir(), "/%s", name)
		assert.Contains(t, bound, "/"+name)
	}

	// This machine is a merged-/usr Debian: /bin is a link.
	if target, err := os.Readlink("/bin"); err == nil && target == "usr/bin" {
		target, err := os.Readlink(filepath.Join(skel, "bin"))
		require.NoError(t, err)
		assert.Equal(t, "usr/bin", target)
		assert.NotContains(t, bound, "/bin")
	}

	passwd, err := os.ReadFile(filepath.Join(skel, "etc/passwd"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(passwd), "root:x:0:0:root:/root:/bin/sh\n"), "%q", passwd)
	assert.Contains(t, string(passwd), "nobody:x:65534:65534:")

	if want, err := os.ReadFile("/etc/ld.so.cache"); err == nil {
		got, err := os.ReadFile(filepath.Join(skel, "etc/ld.so.cache"))
		require.NoError(t, err)
		assert.Equal(t, want, got, "ld.so.cache is not the host's")
	}

	etc := []string{"group", "hosts", "nsswitch.conf", "passwd", "resolv.conf"}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		etc = append(etc, "ld.so.cache")
	}
	if entries, err := os.ReadDir("/etc/alternatives"); err == nil {
		etc = append(etc, "alternatives")
		n := 0
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			n++
			want, err := os.Readlink(filepath.Join("/etc/alternatives", e.Name()))
			require.NoError(t, err)
			got, err := os.Readlink(filepath.Join(skel, "etc/alternatives", e.Name()))
			require.NoError(t, err)
			assert.Equal(t, want, got, "alternative %s", e.Name())
		}
		copied, err := os.ReadDir(filepath.Join(skel, "etc/alternatives"))
		require.NoError(t, err)
		assert.Len(t, copied, n)
	}
	var names []string
	entries, err := os.ReadDir(filepath.Join(skel, "etc"))
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, etc, names, "nothing else of the host's /etc")
}

func TestHostStateDir(t *testing.T) {
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	img := hostImage{root: root}

	st := useStateDir(t)
	spec, err := img.Resolve()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(st, "images"), filepath.Dir(spec.Layers[0]))
	assert.True(t, strings.HasPrefix(filepath.Base(spec.Layers[0]), "host-"), spec.Layers[0])

	// Another state directory: another skeleton, not the cached one.
	st2 := useStateDir(t)
	spec2, err := img.Resolve()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(st2, "images", filepath.Base(spec.Layers[0])), spec2.Layers[0])
}

func TestHostConcurrent(t *testing.T) {
	st := useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	img := hostImage{root: root}

	const n = 32
	layers := make([]string, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			spec, err := img.Resolve()
			if err == nil {
				layers[i] = spec.Layers[0]
			}
			errs[i] = err
		})
		// resolve skips the process's cache, as other processes would.
		wg.Go(func() {
			spec, err := img.resolve()
			if err == nil {
				layers[n+i] = spec.Layers[0]
			}
			errs[n+i] = err
		})
	}
	wg.Wait()
	for i := range layers {
		require.NoError(t, errs[i])
		assert.Equal(t, layers[0], layers[i])
	}
	entries, err := os.ReadDir(filepath.Join(st, "images"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "one skeleton, no leftovers")
	assert.Equal(t, filepath.Base(layers[0]), entries[0].Name())
	assert.Equal(t, plus(skeletonBase, map[string]string{
		"bin":                  "-> usr/bin",
		"sbin":                 "-> usr/sbin",
		"lib":                  "-> usr/lib",
		"lib64":                "-> usr/lib64",
		"etc/ld.so.cache":      "file 0644 fake ld.so.cache",
		"etc/alternatives":     "dir 0755",
		"etc/alternatives/cc":  "-> /usr/bin/gcc-12",
		"etc/alternatives/awk": "-> /usr/bin/mawk",
	}), describeTree(t, layers[0]))
}

func TestHostLosesRenameRace(t *testing.T) {
	st := useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)

	// Another process renames its skeleton into place just before this one.
	testHookBeforeRename = func(final string) {
		require.NoError(t, os.MkdirAll(filepath.Join(final, "theirs"), 0o755))
	}
	t.Cleanup(func() { testHookBeforeRename = nil })

	spec, err := hostImage{root: root}.Resolve()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"theirs": "dir 0755"}, describeTree(t, spec.Layers[0]))
	entries, err := os.ReadDir(filepath.Join(st, "images"))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "this process's skeleton is removed")
}

func TestHostReusesSkeleton(t *testing.T) {
	useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	spec, err := hostImage{root: root}.resolve()
	require.NoError(t, err)
	marker := filepath.Join(spec.Layers[0], "marker")
	require.NoError(t, os.WriteFile(marker, nil, 0o644))

	// A host with the same content, seen by another process.
	root2 := tempDir(t)
	makeTree(t, root2, mergedHost)
	spec2, err := hostImage{root: root2}.Resolve()
	require.NoError(t, err)
	assert.Equal(t, spec.Layers, spec2.Layers)
	assert.FileExists(t, marker, "the skeleton is not rebuilt")
	assert.Equal(t, []Bind{{Source: filepath.Join(root2, "usr"), Target: "/usr"}}, spec2.Binds)

	// A change to the host changes the skeleton.
	require.NoError(t, os.WriteFile(filepath.Join(root2, "etc/ld.so.cache"), []byte("new"), 0o644))
	spec3, err := hostImage{root: root2}.resolve()
	require.NoError(t, err)
	assert.NotEqual(t, spec.Layers, spec3.Layers)
}

func TestHostRebuildsRemovedSkeleton(t *testing.T) {
	useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	img := hostImage{root: root}

	spec, err := img.Resolve()
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(spec.Layers[0]))
	spec2, err := img.Resolve()
	require.NoError(t, err)
	assert.Equal(t, spec, spec2)
	assert.DirExists(t, filepath.Join(spec2.Layers[0], "etc"))
}

func TestHostSpecIsACopy(t *testing.T) {
	useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	img := hostImage{root: root}

	spec, err := img.Resolve()
	require.NoError(t, err)
	want := cloneSpec(spec)
	spec.Layers[0] = "/changed"
	spec.Binds[0].Writable = true
	spec2, err := img.Resolve()
	require.NoError(t, err)
	assert.Equal(t, want, spec2)
}

func TestHostRetriesAfterError(t *testing.T) {
	st := useStateDir(t)
	root := tempDir(t)
	makeTree(t, root, mergedHost)
	img := hostImage{root: root}

	require.NoError(t, os.WriteFile(st, nil, 0o600)) // in the way
	_, err := img.Resolve()
	require.Error(t, err)
	assert.ErrorContains(t, err, img.String())

	require.NoError(t, os.Remove(st))
	spec, err := img.Resolve()
	require.NoError(t, err)
	checkSpec(t, spec)
}

func TestRemoveStaleTemps(t *testing.T) {
	images := tempDir(t)
	makeTree(t, images, map[string]string{
		".tmp-host-old-1/etc/passwd": "",
		".tmp-host-new-2/etc/passwd": "",
		"host-old/etc/passwd":        "",
		"other/":                     "",
	})
	old := time.Now().Add(-2 * staleTemp)
	for _, name := range []string{".tmp-host-old-1", "host-old", "other"} {
		require.NoError(t, os.Chtimes(filepath.Join(images, name), old, old))
	}
	removeStaleTemps(images)
	var names []string
	entries, err := os.ReadDir(images)
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{".tmp-host-new-2", "host-old", "other"}, names)
}

func BenchmarkHostResolve(b *testing.B) {
	b.Setenv(state.EnvDir, filepath.Join(b.TempDir(), "state"))
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			if _, err := Host().(hostImage).resolve(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := Host().Resolve(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
