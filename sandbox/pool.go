package sandbox

// PoolStats counts a pool's runs.
type PoolStats struct {
	// Runs is how many runs were given a sandbox.
	Runs int64
	// Reused is how many of them were given one that an earlier run had
	// left clean (see NewPool); the others, one set up for them.
	Reused int64
}
