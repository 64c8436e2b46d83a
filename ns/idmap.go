package ns

import (
	"fmt"
	"strings"
)

// IDMap maps Count ids from Inside, in a user namespace, to Outside, in
// its parent: one line of /proc/PID/uid_map or gid_map.
type IDMap struct {
	Inside, Outside, Count uint32
}

// Format renders maps in the format of /proc/PID/uid_map.
func Format(maps ...IDMap) string {
	var b strings.Builder
	for _, m := range maps {
		fmt.Fprintf(&b, "%d %d %d\n", m.Inside, m.Outside, m.Count)
	}
	return b.String()
}

// Self maps root inside a user namespace to id outside, and nothing else:
// what an unprivileged process may write for its own child.
func Self(id int) IDMap { return IDMap{Inside: 0, Outside: uint32(id), Count: 1} }
