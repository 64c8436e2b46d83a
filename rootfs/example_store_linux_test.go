package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hutchbox/hutch/rootfs"
)

func ExampleStore() {
	dir, err := os.MkdirTemp("", "store")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A store holds images: here in a directory of our own. OpenStore("")
	// opens the default one (/var/lib/hutch as root).
	store, err := rootfs.OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// Import a root filesystem tarball (a tiny one, made here).
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o644, Size: 6})
	tw.Write([]byte("hello\n"))
	tw.Close()
	tarball := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarball, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	info, err := store.Import(context.Background(), "rootfs-tar:"+tarball, "tiny:v1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Name, len(info.Layers), "layer")

	// A stored image is a rootfs.Image: give it to sandbox.Run.
	spec, err := store.Image("tiny:v1").Resolve()
	if err != nil {
		log.Fatal(err)
	}
	motd, _ := os.ReadFile(filepath.Join(spec.Layers[0], "etc/motd"))
	fmt.Printf("%s", motd)

	// Remove the record; GC then drops the layers no image needs.
	if err := store.Remove("tiny:v1"); err != nil {
		log.Fatal(err)
	}
	store.Close() // this Store resolved the image: its layers count as in use until Close
	store, _ = rootfs.OpenStore(filepath.Join(dir, "store"))
	res, err := store.GC(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("freed", res.Layers, "layer")
	// Output:
	// tiny:v1 1 layer
	// hello
	// freed 1 layer
}
