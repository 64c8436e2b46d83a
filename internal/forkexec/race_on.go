//go:build race

package forkexec

// raceEnabled: the race detector instruments initEntry's ABI0 entry,
// which runs with no Go runtime behind it in an init that shares the
// zygote's memory. Such inits are not made under it (see zygote).
const raceEnabled = true
