// Package integration shows hutch as a Docker-free testcontainers: its test
// (integration_test.go) builds a busybox root filesystem, starts busybox
// httpd in a sandbox per test with sandboxtest.Start, waits until it serves,
// and talks to it over HTTP through a port forwarded to the host's
// 127.0.0.1; it copies files in, execs commands in the running sandbox, and
// reads the server's logs. Run it with
//
//	sudo go test -v ./examples/integration
//
// The package has no code of its own: the test file is the example.
package integration
