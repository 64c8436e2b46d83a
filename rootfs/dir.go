package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Dir returns the image of a directory that holds a root filesystem: an
// unpacked busybox or Debian tree, say. The directory is its single layer.
//
// Resolve makes path absolute (relative to the working directory at the time
// of the call), evaluates the symbolic links in it, and checks that it names
// a directory. It fails with an *fs.PathError whose Op is "image": one that
// wraps [fs.ErrNotExist] when the directory is missing, and [syscall.ENOTDIR]
// when path names something other than a directory.
//
// The directory is used in place, not copied: changing it while a sandbox
// runs on it is undefined behaviour of overlayfs.
func Dir(path string) Image { return dirImage{path: path} }

// Layers returns the image made of several directories stacked like the
// layers of an overlay mount, top layer first: a file in an earlier layer
// hides the file of the same name in a later one. Each directory is checked
// like the one of [Dir], and at least one is required.
func Layers(paths ...string) Image {
	return layersImage{paths: append([]string(nil), paths...)}
}

type dirImage struct{ path string }

func (d dirImage) String() string { return "rootfs.Dir(" + strconv.Quote(d.path) + ")" }

func (d dirImage) Resolve() (*Spec, error) {
	layer, err := resolveLayer(d.path)
	if err != nil {
		return nil, err
	}
	return &Spec{Layers: []string{layer}}, nil
}

type layersImage struct{ paths []string }

func (l layersImage) String() string {
	quoted := make([]string, len(l.paths))
	for i, p := range l.paths {
		quoted[i] = strconv.Quote(p)
	}
	return "rootfs.Layers(" + strings.Join(quoted, ", ") + ")"
}

// errNoLayers is wrapped by the error of an image with no layers.
var errNoLayers = fmt.Errorf("%w: no layers", fs.ErrInvalid)

func (l layersImage) Resolve() (*Spec, error) {
	if len(l.paths) == 0 {
		return nil, fmt.Errorf("%v: %w", l, errNoLayers)
	}
	spec := &Spec{Layers: make([]string, len(l.paths))}
	for i, p := range l.paths {
		layer, err := resolveLayer(p)
		if err != nil {
			return nil, err
		}
		spec.Layers[i] = layer
	}
	return spec, nil
}

// resolveLayer returns the absolute, symlink-free path of the layer
// directory path.
func resolveLayer(path string) (string, error) {
	if path == "" {
		return "", &fs.PathError{Op: "image", Path: path, Err: fmt.Errorf("%w: empty path", fs.ErrInvalid)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", &fs.PathError{Op: "image", Path: path, Err: err}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		var fi fs.FileInfo
		if fi, err = os.Stat(real); err == nil && !fi.IsDir() {
			err = errNotDir
		}
	}
	if err != nil {
		// Keep the cause, not the lstat of whichever element failed: the
		// path the caller gave says more.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", &fs.PathError{Op: "image", Path: abs, Err: err}
	}
	return real, nil
}

// errNotDir is the error of a path that is not a directory.
var errNotDir error = syscall.ENOTDIR
