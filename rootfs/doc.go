// Package rootfs describes the root filesystems a sandbox starts from.
//
// An [Image] is read-only: an ordered list of layer directories that become
// the lower layers of an overlay mount, plus host paths bound read-only into
// the tree. The sandbox adds a throwaway writable layer on top, so nothing a
// sandboxed program does ever reaches the image.
//
// Three images come with the package: [Dir], a directory holding a root
// filesystem (an unpacked busybox or Debian tree, say); [Layers], several
// such directories stacked; and [Host], the embedded default that presents
// the host's own /usr, /bin, /lib* and /sbin read-only under a small
// generated /etc.
//
// A [Store] keeps OCI and Docker images on disk, each layer unpacked once
// and shared: it imports OCI image layouts, docker-save tarballs and root
// filesystem tarballs, pulls from registries, commits a sandbox's writable
// layer as a new image ([Diff] lists what it changed) and exports OCI image
// layouts. [Store.Image] makes a stored image an [Image].
package rootfs
