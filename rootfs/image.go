package rootfs

// Image is a read-only root filesystem a sandbox can start from.
//
// Implementations must be safe for concurrent use: many sandboxes may
// resolve the same image at once.
type Image interface {
	// Resolve checks the image and returns how to mount it. It is called
	// once per sandbox before anything is created, so an image that is
	// missing or malformed fails the run early with the error Resolve
	// returns (an *fs.PathError for a missing directory).
	Resolve() (*Spec, error)
}

// Spec is an image made concrete: what the sandbox mounts to build its root.
type Spec struct {
	// Layers are absolute paths of read-only directories, top layer first.
	// They become the lower layers of the root's overlay mount. At least
	// one is required.
	Layers []string

	// Binds are host paths bound read-only into the root once the overlay
	// is mounted, in order. Their targets must exist in the layers.
	Binds []Bind
}

// Bind binds a host path into the sandbox's root.
type Bind struct {
	// Source is an absolute host path with no symbolic links in it.
	Source string
	// Target is an absolute path inside the sandbox's root.
	Target string
	// Writable makes the bind read-write; by default it is read-only.
	Writable bool
}
