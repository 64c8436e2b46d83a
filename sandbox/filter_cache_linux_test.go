package sandbox

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A custom filter is assembled once for every filter that says the same,
// and again when what it says changes.
func TestFilterCache(t *testing.T) {
	a := &SyscallFilter{Allow: []string{"ptrace"}, Deny: []string{"chmod"}}
	b := &SyscallFilter{Allow: []string{"ptrace"}, Deny: []string{"chmod"}}
	pa, err := a.program()
	require.NoError(t, err)
	pb, err := b.program()
	require.NoError(t, err)
	assert.Same(t, pa, pb, "the same filter, assembled once")
	sa, err := a.split()
	require.NoError(t, err)
	sb, err := b.split()
	require.NoError(t, err)
	assert.Same(t, sa, sb, "the same split, made once")

	b.Deny = append(b.Deny, "fchmodat")
	pc, err := b.program()
	require.NoError(t, err)
	assert.NotSame(t, pa, pc, "a changed filter is assembled anew")
	assert.NotEqual(t, pa.Filter, pc.Filter)

	// Nil and empty Replace say different things: the default allowlist,
	// or none.
	plain, err := (&SyscallFilter{Allow: []string{"read"}}).program()
	require.NoError(t, err)
	replaced, err := (&SyscallFilter{Allow: []string{"read"}, Replace: []string{}}).program()
	require.NoError(t, err)
	assert.NotEqual(t, plain.Filter, replaced.Filter)

	// Names are length-prefixed: lists that would spell the same string
	// joined do not share a key.
	assert.NotEqual(t, (&SyscallFilter{Allow: []string{"ab", "c"}}).key(), (&SyscallFilter{Allow: []string{"a", "bc"}}).key())
	assert.NotEqual(t, (&SyscallFilter{Allow: []string{"d0"}}).key(), (&SyscallFilter{Deny: []string{}}).key())

	// A bad filter is an error each time, never a program.
	bad := &SyscallFilter{Deny: []string{"no_such_call"}}
	for range 2 {
		p, err := bad.program()
		var ce *ConfigError
		require.True(t, errors.As(err, &ce), "%v", err)
		assert.Equal(t, "Syscalls", ce.Field)
		assert.Nil(t, p)
	}

	// The cache stays bounded (each of these has a key of its own).
	for i := range filterCacheSize + 5 {
		_, err := (&SyscallFilter{Allow: append([]string{"ptrace"}, slices.Repeat([]string{"read"}, i)...)}).program()
		require.NoError(t, err)
	}
	assembledFilters.mu.Lock()
	n := len(assembledFilters.m)
	assembledFilters.mu.Unlock()
	assert.LessOrEqual(t, n, filterCacheSize)
}
