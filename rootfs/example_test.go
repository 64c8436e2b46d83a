package rootfs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/hutchbox/hutch/rootfs"
)

func ExampleDir() {
	// A root filesystem unpacked into a directory: here a tiny one.
	root, err := os.MkdirTemp("", "rootfs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		log.Fatal(err)
	}

	spec, err := rootfs.Dir(root).Resolve()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(spec.Layers), "layer,", len(spec.Binds), "binds")

	// A missing directory fails early, with an error that says so.
	img := rootfs.Dir(filepath.Join(root, "missing"))
	_, err = img.Resolve()
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// 1 layer, 0 binds
	// true
}

func ExampleLayers() {
	base, err := os.MkdirTemp("", "layers")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)
	for _, layer := range []string{"app", "python", "debian"} {
		if err := os.Mkdir(filepath.Join(base, layer), 0o755); err != nil {
			log.Fatal(err)
		}
	}

	// The application's files over a Python installation over a Debian
	// tree, top layer first.
	spec, err := rootfs.Layers(
		filepath.Join(base, "app"),
		filepath.Join(base, "python"),
		filepath.Join(base, "debian"),
	).Resolve()
	if err != nil {
		log.Fatal(err)
	}
	for _, layer := range spec.Layers {
		fmt.Println(filepath.Base(layer))
	}
	// Output:
	// app
	// python
	// debian
}

func ExampleHost() {
	// The default image: the host's programs, none of its configuration.
	spec, err := rootfs.Host().Resolve()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("skeleton:", spec.Layers[0])
	for _, b := range spec.Binds {
		fmt.Printf("%s from the host's %s, read-only\n", b.Target, b.Source)
	}
}
