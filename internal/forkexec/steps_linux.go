package forkexec

import "golang.org/x/sys/unix"

// opKind is one kind of setup step the child knows how to run.
type opKind uint8

const (
	opMount       opKind = iota + 1 // mount(a, b, c, flags, d)
	opMkdir                         // mkdirat(a, mode); an existing entry is fine
	opEnsureDir                     // mkdirat(a, mode); an existing entry must be a directory, not a link
	opTouch                         // create the file a if missing (O_NOFOLLOW)
	opSymlink                       // symlinkat(a, b): link b pointing to a
	opChdir                         // chdir(a)
	opPivotRoot                     // pivot_root(a, b)
	opUmount                        // umount2(a, flags)
	opRmdir                         // unlinkat(a, AT_REMOVEDIR)
	opSethostname                   // sethostname(a)
	opLoopbackUp                    // bring the lo interface up
	opChmod                         // fchmodat(a, mode)
	opCheckCwd                      // getcwd must be a path inside the root
	opOpenTree                      // open_tree(a, OPEN_TREE_CLONE|AT_RECURSIVE) as descriptor flags
	opMoveMount                     // move_mount(descriptor flags, b)
	opClose                         // close descriptor flags
	opOpenFile                      // openat(a, mode as open flags) as descriptor flags
	opWaitParent                    // wait for the parent's go-ahead
)

// Step is one step of the setup program the child runs in its new
// namespaces before it starts the command. Steps are built with the
// functions below; Stage and Path name the step in errors.
type Step struct {
	// Stage names the step in a *StepError, e.g. "mount overlay".
	Stage string
	// Path is the path the step acts on, reported in a *StepError.
	Path string

	kind       opKind
	a, b, c, d string
	flags      uintptr
	mode       uint32
	// slot numbers a descriptor opened by OpenPath, for OpenPath,
	// CloseSlot and BindSlot (whose source it is).
	slot    int
	useSlot bool
}

// Mount is mount(2) of source on target.
func Mount(stage, source, target, fstype string, flags uintptr, data string) Step {
	return Step{Stage: stage, Path: target, kind: opMount, a: source, b: target, c: fstype, d: data, flags: flags}
}

// Bind bind-mounts source onto target, recursively.
func Bind(stage, source, target string) Step {
	return Mount(stage, source, target, "", unix.MS_BIND|unix.MS_REC, "")
}

// Remount changes the flags of the mount at target; with MS_BIND in flags
// it changes only the per-mount flags (read-only, nosuid, ...).
func Remount(stage, target string, flags uintptr) Step {
	return Mount(stage, "", target, "", unix.MS_REMOUNT|flags, "")
}

// Mkdir creates the directory path; an entry already there is fine.
func Mkdir(stage, path string, mode uint32) Step {
	return Step{Stage: stage, Path: path, kind: opMkdir, a: path, mode: mode}
}

// EnsureDir creates the directory path, or checks that what is there is a
// directory and not a symbolic link (a link could point the mount that
// follows anywhere).
func EnsureDir(stage, path string, mode uint32) Step {
	return Step{Stage: stage, Path: path, kind: opEnsureDir, a: path, mode: mode}
}

// Touch creates an empty file at path if nothing is there, without
// following a symbolic link.
func Touch(stage, path string, mode uint32) Step {
	return Step{Stage: stage, Path: path, kind: opTouch, a: path, mode: mode}
}

// Symlink creates the symbolic link link pointing to target.
func Symlink(stage, target, link string) Step {
	return Step{Stage: stage, Path: link, kind: opSymlink, a: target, b: link}
}

// Chdir changes the working directory.
func Chdir(stage, path string) Step {
	return Step{Stage: stage, Path: path, kind: opChdir, a: path}
}

// PivotRoot makes newRoot the root and moves the old root to putOld.
func PivotRoot(stage, newRoot, putOld string) Step {
	return Step{Stage: stage, Path: newRoot, kind: opPivotRoot, a: newRoot, b: putOld}
}

// Umount is umount2(2).
func Umount(stage, path string, flags uintptr) Step {
	return Step{Stage: stage, Path: path, kind: opUmount, a: path, flags: flags}
}

// Rmdir removes an empty directory.
func Rmdir(stage, path string) Step {
	return Step{Stage: stage, Path: path, kind: opRmdir, a: path}
}

// Chmod sets the mode of path, following links.
func Chmod(stage, path string, mode uint32) Step {
	return Step{Stage: stage, Path: path, kind: opChmod, a: path, mode: mode}
}

// Sethostname sets the UTS namespace's hostname.
func Sethostname(name string) Step {
	return Step{Stage: "sethostname", Path: name, kind: opSethostname, a: name}
}

// LoopbackUp brings the network namespace's lo interface up.
func LoopbackUp() Step {
	return Step{Stage: "bring up lo", Path: "lo", kind: opLoopbackUp}
}

// CloneTree makes a detached recursive copy of the mount tree at path
// (open_tree with OPEN_TREE_CLONE), kept as descriptor slot for a later
// AttachTree: a way to bind a host path after the host's root is gone, so
// that nothing in the new root can redirect the bind to the host.
func CloneTree(stage, path string, slot int) Step {
	return Step{Stage: stage, Path: path, kind: opOpenTree, a: path, slot: slot, useSlot: true}
}

// AttachTree mounts the tree cloned by CloneTree(slot) on target
// (move_mount). Target resolves in the caller's current root.
func AttachTree(stage string, slot int, target string) Step {
	return Step{Stage: stage, Path: target, kind: opMoveMount, b: target, slot: slot, useSlot: true}
}

// CloseSlot closes the descriptor of an OpenPath step.
func CloseSlot(slot int) Step {
	return Step{Stage: "close descriptor", kind: opClose, slot: slot, useSlot: true}
}

// OpenSlot opens path with flags (O_CLOEXEC is added) as descriptor
// slot: for Config.CgroupProcsSlots and CgroupDirSlots, or a CloseSlot.
func OpenSlot(stage, path string, flags int, slot int) Step {
	return Step{Stage: stage, Path: path, kind: opOpenFile, a: path, mode: uint32(flags | unix.O_CLOEXEC), slot: slot, useSlot: true}
}

// WaitParent waits for the parent's go-ahead (Release) here rather than
// before the first step: the steps before it run while the parent still
// has work to do (making the cgroup whose files the steps after it open).
// Not for a child in a user namespace, whose ID maps must be written
// before any step.
func WaitParent(stage string) Step {
	return Step{Stage: stage, kind: opWaitParent}
}

// CheckCwd fails unless the working directory is a path in the current
// root: getcwd says "(unreachable)" for one outside it, which is how a
// leaked descriptor of a host directory used as the working directory
// shows (CVE-2024-21626).
func CheckCwd(stage string) Step {
	return Step{Stage: stage, kind: opCheckCwd}
}
