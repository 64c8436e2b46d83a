//go:build !linux

package early

// Netns is nil: no namespace is made where there are none.
var Netns chan int
