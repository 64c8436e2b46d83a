//go:build !linux

package rootfs

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// OpenStore fails off Linux: layers are applied as overlayfs layers.
func OpenStore(dir string) (*Store, error) { return nil, errUnsupported }

func (s *Store) Close() error                           { return nil }
func (s *Store) Lookup(name string) (*ImageInfo, error) { return nil, errUnsupported }
func (s *Store) Images() ([]ImageInfo, error)           { return nil, errUnsupported }
func (s *Store) Remove(name string) error               { return errUnsupported }
func (s *Store) GC(ctx context.Context) (*GCResult, error) {
	return nil, errUnsupported
}
func (s *Store) Image(name string) Image { return unsupportedImage{} }
func (s *Store) NewWritableLayer() (string, func() error, error) {
	return "", nil, errUnsupported
}
func (s *Store) Import(ctx context.Context, src, name string, opts ...Option) (*ImageInfo, error) {
	return nil, errUnsupported
}
func (s *Store) ImportImage(ctx context.Context, name string, img v1.Image, opts ...Option) (*ImageInfo, error) {
	return nil, errUnsupported
}
func (s *Store) Pull(ctx context.Context, ref string, opts ...Option) (*ImageInfo, error) {
	return nil, errUnsupported
}
func (s *Store) Commit(ctx context.Context, base, writableLayer, name string, opts ...Option) (*ImageInfo, error) {
	return nil, errUnsupported
}
func (s *Store) Export(ctx context.Context, name, dir string, opts ...Option) error {
	return errUnsupported
}

// Diff fails off Linux.
func Diff(img Image, writableLayer string) ([]Change, error) { return nil, errUnsupported }

type unsupportedImage struct{}

func (unsupportedImage) Resolve() (*Spec, error) { return nil, errUnsupported }

// errUnsupported is the error of every store operation off Linux.
var errUnsupported = fmt.Errorf("rootfs: image store: %w on %s", errors.ErrUnsupported, runtime.GOOS)
