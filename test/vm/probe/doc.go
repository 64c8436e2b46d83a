// Package probe checks the environment of the cgroup v2 test lane: the small
// VM that test/vm/run boots. Its tests skip unless HUTCH_TEST_LANE is
// "vm-cgroup2"; inside the VM they assert that a unified cgroup v2 hierarchy
// is mounted with the memory, pids and cpu controllers available, that
// overlayfs mounts in a fresh mount namespace, and that busybox, /tmp and the
// loopback interface are in place. A failure here means the lane itself is
// broken, not hutch.
//
// Setting HUTCH_TEST_VM_PROBE_FAIL=1 on the host makes TestInjectedFailure
// fail, to check that the lane reports failing packages.
package probe
