package cgroup

import (
	"errors"
	"io/fs"
	"math"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests that need no cgroups, on any system.

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Unavailable: "unavailable", V1: "v1", V2: "v2", Mode(7): "Mode(7)"} {
		assert.Equal(t, want, m.String())
	}
}

func TestGroupPath(t *testing.T) {
	for _, tc := range []struct {
		parent, name string
		group        string // "" = an error
	}{
		{"", "run1", "hutch/run1"},
		{"hutch", "run1", "hutch/run1"},
		{"/judge/workers/", "w-3", "judge/workers/w-3"},
		{"", "", ""},
		{"", "a/b", ""},
		{"", "..", ""},
		{"", ".", ""},
		{"", "a\x00b", ""},
		{"a/../b", "x", ""},
		{"a//b", "x", ""},
		{"", string(make([]byte, 256)), ""},
	} {
		group, _, err := Config{Parent: tc.parent, Name: tc.name}.groupPath()
		if tc.group == "" {
			assert.Error(t, err, "parent %q name %q", tc.parent, tc.name)
			continue
		}
		if assert.NoError(t, err) {
			assert.Equal(t, tc.group, group)
		}
	}
}

func TestResourcesValidate(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		r    Resources
		ok   bool
	}{
		{"none", Resources{}, true},
		{"all", Resources{Memory: i(1 << 20), Pids: i(1), CPUs: f(0.01)}, true},
		{"zero memory", Resources{Memory: i(0)}, false},
		{"negative memory", Resources{Memory: i(-1)}, false},
		{"zero pids", Resources{Pids: i(0)}, false},
		{"zero CPUs", Resources{CPUs: f(0)}, false},
		{"tiny CPUs", Resources{CPUs: f(0.001)}, false},
		{"NaN CPUs", Resources{CPUs: f(math.NaN())}, false},
		{"infinite CPUs", Resources{CPUs: f(math.Inf(1))}, false},
	} {
		err := tc.r.validate()
		assert.Equal(t, tc.ok, err == nil, "%s: %v", tc.name, err)
	}
	assert.Equal(t, int64(50000), cpuQuota(0.5))
	assert.Equal(t, int64(200000), cpuQuota(2))
}

func TestErrorIs(t *testing.T) {
	pe := func(errno syscall.Errno) error { return &fs.PathError{Op: "mkdir", Path: "/x", Err: errno} }
	for _, tc := range []struct {
		err    error
		target error
		want   bool
	}{
		{&Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EACCES)}, fs.ErrPermission, true},
		{&Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EPERM)}, fs.ErrPermission, true},
		{&Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EROFS)}, fs.ErrPermission, true},
		{&Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EEXIST)}, fs.ErrExist, true},
		{&Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EEXIST)}, fs.ErrPermission, false},
		{&Error{Op: "create", Path: "/hutch/a", Err: unsupported("no cgroups")}, errors.ErrUnsupported, true},
		{&UnavailableError{Reason: "r", Err: &Error{Op: "create", Err: pe(syscall.EROFS)}}, fs.ErrPermission, true},
	} {
		assert.Equal(t, tc.want, errors.Is(tc.err, tc.target), "%v is %v", tc.err, tc.target)
	}
	e := &Error{Op: "create", Path: "/hutch/a", Err: pe(syscall.EACCES)}
	assert.Equal(t, "cgroup /hutch/a: create: mkdir /x: permission denied", e.Error())
	var pathErr *fs.PathError
	require.ErrorAs(t, e, &pathErr)
}
