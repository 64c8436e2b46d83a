package rootfs

import (
	"fmt"
	"io/fs"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Option adjusts a store operation ([Store.Import], [Store.Pull],
// [Store.ImportImage], [Store.Commit], [Store.Export]). Options are checked
// together when the operation starts: one that does not apply to it is an
// error that wraps [fs.ErrInvalid], as is a bad value.
type Option func(*options)

// DefaultMaxLayerSize is the most bytes a layer may unpack to unless
// [WithMaxLayerSize] says otherwise.
const DefaultMaxLayerSize int64 = 16 << 30

// A layer that has unpacked more than bombMinSize bytes, at more than
// bombRatio bytes per byte read, is taken for a decompression bomb: real
// layers compress a few times, not hundreds.
const (
	bombMinSize = 256 << 20
	bombRatio   = 500
)

type options struct {
	progress     func(Progress)
	platform     string
	keychain     authn.Keychain
	insecure     bool
	maxLayerSize int64
	comment      string
	author       string
	tag          string

	// set records which options were given, for validation.
	set map[string]bool
	// source is recorded in the image record (set by the operation).
	source string
}

func (o *options) mark(name string) {
	if o.set == nil {
		o.set = map[string]bool{}
	}
	o.set[name] = true
}

// WithProgress calls fn as layers are read during an import or a pull. The
// calls come one at a time, from goroutines of the operation; fn must not
// block for long.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) { o.mark("WithProgress"); o.progress = fn }
}

// WithPlatform picks the image for platform ("os/arch[/variant]", e.g.
// "linux/arm64") when the source is an index of several. The default is
// linux and the architecture hutch runs on.
func WithPlatform(platform string) Option {
	return func(o *options) { o.mark("WithPlatform"); o.platform = platform }
}

// WithKeychain sets where a pull finds registry credentials. The default is
// [authn.DefaultKeychain]: the Docker configuration ($DOCKER_CONFIG or
// ~/.docker/config.json, with its credential helpers).
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) { o.mark("WithKeychain"); o.keychain = kc }
}

// WithInsecure lets a pull talk plain HTTP to a registry. Registries on
// localhost, loopback and private addresses get HTTP without it.
func WithInsecure() Option {
	return func(o *options) { o.mark("WithInsecure"); o.insecure = true }
}

// WithMaxLayerSize bounds how many bytes one layer may unpack to (the sum
// of its uncompressed tar stream); past it the import fails with
// [ErrLayerTooLarge]. The default is [DefaultMaxLayerSize].
func WithMaxLayerSize(n int64) Option {
	return func(o *options) { o.mark("WithMaxLayerSize"); o.maxLayerSize = n }
}

// WithComment sets the comment of the history entry a commit adds.
func WithComment(comment string) Option {
	return func(o *options) { o.mark("WithComment"); o.comment = comment }
}

// WithAuthor sets the author a commit records in the image configuration.
func WithAuthor(author string) Option {
	return func(o *options) { o.mark("WithAuthor"); o.author = author }
}

// WithTag sets the name an export gives the image in the layout's index
// (the org.opencontainers.image.ref.name annotation); the default is the
// image's tag.
func WithTag(tag string) Option {
	return func(o *options) { o.mark("WithTag"); o.tag = tag }
}

// applies lists, per operation, the options that apply to it.
var applies = map[string][]string{
	"Import":      {"WithProgress", "WithPlatform", "WithMaxLayerSize"},
	"ImportImage": {"WithProgress", "WithMaxLayerSize"},
	"Pull":        {"WithProgress", "WithPlatform", "WithKeychain", "WithInsecure", "WithMaxLayerSize"},
	"Commit":      {"WithComment", "WithAuthor", "WithMaxLayerSize"},
	"Export":      {"WithTag"},
}

// makeOptions applies opts and checks them for operation op.
func makeOptions(op string, opts []Option) (*options, error) {
	o := &options{maxLayerSize: DefaultMaxLayerSize, keychain: authn.DefaultKeychain,
		platform: "linux/" + runtime.GOARCH}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("rootfs: %s: %s: %w", op, fmt.Sprintf(format, a...), fs.ErrInvalid)
	}
	for name := range o.set {
		ok := false
		for _, a := range applies[op] {
			ok = ok || a == name
		}
		if !ok {
			return nil, bad("%s does not apply", name)
		}
	}
	if o.maxLayerSize <= 0 {
		return nil, bad("WithMaxLayerSize(%d): not positive", o.maxLayerSize)
	}
	if o.keychain == nil {
		return nil, bad("WithKeychain(nil)")
	}
	if p, err := v1.ParsePlatform(o.platform); err != nil || p.OS == "" || p.Architecture == "" {
		return nil, bad("WithPlatform(%q): not os/arch[/variant]", o.platform)
	}
	if strings.ContainsAny(o.tag, "/@:") && o.set["WithTag"] {
		return nil, bad("WithTag(%q): a tag has no '/', '@' or ':'", o.tag)
	}
	return o, nil
}

func (o *options) wantPlatform() v1.Platform {
	p, _ := v1.ParsePlatform(o.platform)
	return *p
}
