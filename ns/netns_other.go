//go:build !linux

package ns

// AwaitNetwork does nothing where there are no network namespaces.
func AwaitNetwork(made <-chan int) {}
