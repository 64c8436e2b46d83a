//go:build !race

package forkexec

// raceEnabled: see race_on.go.
const raceEnabled = false
