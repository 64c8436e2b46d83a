package rootfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"a/b": "a/b", "./a//b/": "a/b", ".": "", "./": "", "a/./b": "a/b",
	} {
		got, err := cleanPath(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"/a", "../a", "a/../../b", "a/..", "a\x00b"} {
		_, err := cleanPath(in)
		assert.ErrorIs(t, err, ErrUnsafePath, in)
	}
}
