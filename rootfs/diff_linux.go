package rootfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Diff lists what a sandbox that ran on img changed, like docker diff:
// writableLayer is the directory the sandbox was given as its
// WritableLayer, whose "upper" subdirectory holds the changes. A path in
// it that img has is Changed (directories on the way to a change
// included), one img lacks is Added, a whiteout is Deleted, and so is
// everything an opaque directory hides. Paths come sorted. Only the
// image's layers count, not its binds.
func Diff(img Image, writableLayer string) ([]Change, error) {
	spec, err := img.Resolve()
	if err != nil {
		return nil, err
	}
	upper := filepath.Join(writableLayer, "upper")
	var out []Change
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		found, contrib := lowerLookup(spec.Layers, rel)
		if isWhiteout(&st) {
			if found {
				out = append(out, Change{Kind: Deleted, Path: "/" + rel})
			}
			return nil
		}
		kind := Added
		if found {
			kind = Changed
		}
		out = append(out, Change{Kind: kind, Path: "/" + rel})
		if found && contrib != nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && isOpaque(p) {
			// The directory was deleted and made again: what it had and
			// no longer has is gone.
			for _, name := range lowerChildren(contrib, rel) {
				if _, err := os.Lstat(filepath.Join(p, name)); err != nil {
					out = append(out, Change{Kind: Deleted, Path: "/" + rel + "/" + name})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rootfs: diff: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func isOpaque(p string) bool {
	for _, name := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if v, err := getXattr(p, name); err == nil && v == "y" {
			return true
		}
	}
	return false
}

// lowerLookup looks rel up in read-only overlay layers (top first) as
// overlayfs does, and reports whether it exists and, for a directory, the
// layers whose directories merge into it (top first; nil for anything
// else).
func lowerLookup(layers []string, rel string) (found bool, contrib []string) {
	contrib = layers
	elems := strings.Split(rel, "/")
	for i := range elems {
		sub := filepath.Join(elems[:i+1]...)
		var next []string
		found = false
		for _, l := range contrib {
			p := filepath.Join(l, sub)
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil {
				continue
			}
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			if !found {
				if isWhiteout(&st) {
					return false, nil
				}
				found = true
				if !isDir {
					return i == len(elems)-1, nil
				}
			} else if !isDir {
				break // a whiteout or a file below a directory ends the merge
			}
			next = append(next, l)
			if isOpaque(p) {
				break
			}
		}
		if !found {
			return false, nil
		}
		contrib = next
	}
	return true, contrib
}

// lowerChildren lists the names visible in the merged directory rel of
// the layers contrib (top first).
func lowerChildren(contrib []string, rel string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range contrib {
		entries, err := os.ReadDir(filepath.Join(l, rel))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(l, rel, e.Name()), &st) == nil && isWhiteout(&st) {
				continue
			}
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
