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

	// Config is how the image asks to be run, when it says (an OCI or
	// Docker image does; a plain directory does not). The sandbox applies
	// it where the caller leaves the matching setting empty.
	Config *Config
}

// Config is the part of an OCI image configuration that says how to run
// it.
type Config struct {
	// Env is the default environment, "KEY=value" strings.
	Env []string `json:"Env,omitempty"`
	// Entrypoint and Cmd make the default command: Entrypoint followed by
	// Cmd. A caller that gives its own command replaces both.
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	// WorkingDir is the default working directory.
	WorkingDir string `json:"WorkingDir,omitempty"`
	// User is the default user: "uid", "uid:gid", "name" or "name:group",
	// names looked up in the image's /etc/passwd and /etc/group.
	User string `json:"User,omitempty"`
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
