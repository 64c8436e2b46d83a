package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hutchbox/hutch/rootfs"
	"github.com/hutchbox/hutch/sandbox"
)

// imagesUsage is the part of the usage about images.
const imagesUsage = `  hutch pull REF                      pull an image from a registry into the store
  hutch import SRC NAME[:TAG]         import oci:PATH[:TAG], docker-archive:PATH or rootfs-tar:PATH
  hutch images                        list the store's images
  hutch rmi NAME...                   remove images, and the layers no other image uses
  hutch export NAME DIR               write an image as an OCI image layout
`

// cmdImage runs the image subcommand name.
func cmdImage(name string, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("hutch "+name, flag.ContinueOnError)
	flags.SetOutput(stderr)
	store := flags.String("store", "", "image store `DIR` (default $HUTCH_STORE_DIR, /var/lib/hutch as root, ~/.local/share/hutch otherwise)")
	var (
		quiet    *bool
		platform *string
		tag      *string
		usage    string
		nargs    = 0
	)
	switch name {
	case "pull":
		usage, nargs = "hutch pull [flags] [REGISTRY/]REPOSITORY[:TAG|@sha256:HEX]", 1
	case "import":
		usage, nargs = "hutch import [flags] oci:PATH[:TAG]|docker-archive:PATH|rootfs-tar:PATH NAME[:TAG]", 2
	case "images":
		usage = "hutch images [flags]"
		quiet = flags.Bool("q", false, "print only the names")
	case "rmi":
		usage, nargs = "hutch rmi [flags] NAME[:TAG]...", -1
	case "export":
		usage, nargs = "hutch export [flags] NAME[:TAG] DIR", 2
		tag = flags.String("tag", "", "name of the image in the layout's index (default its tag)")
	}
	if name == "pull" || name == "import" {
		quiet = flags.Bool("q", false, "no progress bar")
		platform = flags.String("platform", "", "`os/arch[/variant]` to pick from an index (default linux and this machine's)")
	}
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", usage)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitHutch
	}
	if nargs >= 0 && flags.NArg() != nargs || nargs < 0 && flags.NArg() == 0 {
		fmt.Fprintf(stderr, "hutch %s: wrong number of arguments\nUsage: %s\n", name, usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "hutch %s: %v\n", name, err)
		return exitHutch
	}
	s, err := rootfs.OpenStore(*store)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var opts []rootfs.Option
	var bar *progressBar
	if quiet != nil && !*quiet && (name == "pull" || name == "import") {
		bar = &progressBar{w: stderr, label: flags.Arg(0)}
		opts = append(opts, rootfs.WithProgress(bar.update))
	}
	if platform != nil && *platform != "" {
		opts = append(opts, rootfs.WithPlatform(*platform))
	}
	switch name {
	case "pull", "import":
		var info *rootfs.ImageInfo
		if name == "pull" {
			info, err = s.Pull(ctx, flags.Arg(0), opts...)
		} else {
			info, err = s.Import(ctx, flags.Arg(0), flags.Arg(1), opts...)
		}
		bar.finish()
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s %s\n", info.Name, info.Digest)
	case "images":
		images, err := s.Images()
		if err != nil {
			return fail(err)
		}
		if *quiet {
			for _, img := range images {
				fmt.Fprintln(stdout, img.Name)
			}
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tCREATED\tSIZE\tLAYERS")
		for _, img := range images {
			created := "-"
			if !img.Created.IsZero() {
				created = img.Created.Local().Format("2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", img.Name, shortID(img.ID), created, humanSize(img.Size()), len(img.Layers))
		}
		tw.Flush()
	case "rmi":
		code := 0
		for _, n := range flags.Args() {
			if err := s.Remove(n); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					err = fmt.Errorf("no image %s in the store", n)
				}
				fmt.Fprintf(stderr, "hutch rmi: %v\n", err)
				code = exitHutch
				continue
			}
			fmt.Fprintf(stdout, "removed %s\n", n)
		}
		if err := gc(ctx, s, stdout); err != nil {
			return fail(err)
		}
		return code
	case "export":
		var opts []rootfs.Option
		if *tag != "" {
			opts = append(opts, rootfs.WithTag(*tag))
		}
		if err := s.Export(ctx, flags.Arg(0), flags.Arg(1), opts...); err != nil {
			return fail(err)
		}
	}
	return 0
}

// gc collects the store's garbage and says what it freed. (hutch rmi runs
// it; a general hutch gc can too.)
func gc(ctx context.Context, s *rootfs.Store, w io.Writer) error {
	res, err := s.GC(ctx)
	if err != nil {
		return err
	}
	if res.Layers+res.Blobs+res.Temp > 0 {
		fmt.Fprintf(w, "freed %s: %d layers, %d blobs, %d leftovers\n", humanSize(res.Bytes), res.Layers, res.Blobs, res.Temp)
	}
	if res.InUse > 0 {
		fmt.Fprintf(w, "kept %d unreferenced layers still in use\n", res.InUse)
	}
	return nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// humanSize formats bytes in powers of 1024: "512B", "1.5KiB", "23.4MiB".
func humanSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	f, i := float64(n)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%ciB", f, units[i])
}

// progressBar draws a pull's or an import's progress on one line.
type progressBar struct {
	w     io.Writer
	label string
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func (b *progressBar) update(p rootfs.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.LayersDone < p.Layers && time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	const width = 24
	fill := width
	if p.Total > 0 {
		fill = int(min(p.Bytes, p.Total) * width / p.Total)
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %d/%d layers, %s/%s ", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		p.LayersDone, p.Layers, humanSize(p.Bytes), humanSize(p.Total))
	b.drawn = true
}

func (b *progressBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

// runImage holds what hutch run does with images: --image, --store,
// --commit and --diff.
type runImage struct {
	store  *string
	commit *string
	diff   *bool

	st     *rootfs.Store
	base   string // the store image run, when --image named one
	remove func() error
}

func addRunImageFlags(flags *flag.FlagSet) *runImage {
	return &runImage{
		store:  flags.String("store", "", "image store `DIR` for --image NAME and --commit (default $HUTCH_STORE_DIR, /var/lib/hutch as root, ~/.local/share/hutch otherwise)"),
		commit: flags.String("commit", "", "when the command ends, commit what it changed as the store image `NAME[:TAG]` (needs --image NAME)"),
		diff:   flags.Bool("diff", false, "when the command ends, print what it changed to stderr (A added, C changed, D deleted)"),
	}
}

// image resolves --image: "host", a directory (a path that starts with /
// or ., or that exists), or else an image in the store.
func (r *runImage) image(spec string) (rootfs.Image, error) {
	if spec == "host" {
		return rootfs.Host(), nil
	}
	if strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, ".") {
		return rootfs.Dir(spec), nil
	}
	if fi, err := os.Stat(spec); err == nil && fi.IsDir() {
		return rootfs.Dir(spec), nil
	}
	st, err := r.openStore()
	if err != nil {
		return nil, err
	}
	info, err := st.Lookup(spec)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no image %q in the store %s (hutch pull or hutch import adds one; a directory is ./%s)", spec, st.Dir(), spec)
	}
	if err != nil {
		return nil, err
	}
	r.base = info.Name
	return st.Image(info.Name), nil
}

func (r *runImage) openStore() (*rootfs.Store, error) {
	if r.st == nil {
		st, err := rootfs.OpenStore(*r.store)
		if err != nil {
			return nil, err
		}
		r.st = st
	}
	return r.st, nil
}

// prepare gives the run a writable layer that outlives it when --commit
// or --diff needs one.
func (r *runImage) prepare(cmd *sandbox.Cmd) error {
	if *r.commit == "" && !*r.diff {
		return nil
	}
	if *r.commit != "" && r.base == "" {
		return fmt.Errorf("--commit needs an image from the store (--image NAME[:TAG])")
	}
	if r.st != nil {
		dir, remove, err := r.st.NewWritableLayer()
		if err != nil {
			return err
		}
		cmd.WritableLayer, r.remove = dir, remove
		return nil
	}
	dir, err := os.MkdirTemp("", "hutch-diff-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		return err
	}
	cmd.WritableLayer, r.remove = dir, func() error { return os.RemoveAll(dir) }
	return nil
}

// finish prints the diff and commits, once the command ran (res is nil
// when it never started).
func (r *runImage) finish(ctx context.Context, cmd *sandbox.Cmd, res *sandbox.Result, stderr io.Writer) error {
	if cmd.WritableLayer == "" || res == nil {
		return nil
	}
	if *r.diff {
		changes, err := rootfs.Diff(cmd.Image, cmd.WritableLayer)
		if err != nil {
			return err
		}
		for _, c := range changes {
			fmt.Fprintln(stderr, c)
		}
	}
	if *r.commit != "" {
		info, err := r.st.Commit(ctx, r.base, cmd.WritableLayer, *r.commit)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "hutch: committed %s (%s)\n", info.Name, info.Digest)
	}
	return nil
}

// close removes the writable layer and closes the store.
func (r *runImage) close() {
	if r.remove != nil {
		r.remove()
	}
	if r.st != nil {
		r.st.Close()
	}
}
