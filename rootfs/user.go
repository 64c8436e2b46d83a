package rootfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LookupUser resolves a user as an image configuration writes it ("uid",
// "uid:gid", "name" or "name:group") against the image's own /etc/passwd and
// /etc/group: the topmost layer that has the file decides. A numeric user
// without a group gets the group of its passwd entry, or its own number.
func (s *Spec) LookupUser(user string) (uid, gid uint32, err error) {
	name, group, hasGroup := strings.Cut(user, ":")
	if name == "" {
		return 0, 0, fmt.Errorf("rootfs: user %q: empty name", user)
	}
	passwd := s.readEtc("passwd")
	u, known := findEntry(passwd, name, 2)
	switch n, err := strconv.ParseUint(name, 10, 32); {
	case err == nil:
		uid = uint32(n)
		gid = uint32(n)
		if known {
			if g, err := strconv.ParseUint(u[3], 10, 32); err == nil {
				gid = uint32(g)
			}
		}
	case known:
		n, err := strconv.ParseUint(u[2], 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("rootfs: user %q: bad uid in /etc/passwd", user)
		}
		uid = uint32(n)
		if g, err := strconv.ParseUint(u[3], 10, 32); err == nil {
			gid = uint32(g)
		}
	default:
		return 0, 0, fmt.Errorf("rootfs: user %q: not in the image's /etc/passwd", user)
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uid, uint32(n), nil
	}
	g, ok := findEntry(s.readEtc("group"), group, 2)
	if !ok {
		return 0, 0, fmt.Errorf("rootfs: group %q: not in the image's /etc/group", group)
	}
	n, err := strconv.ParseUint(g[2], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("rootfs: group %q: bad gid in /etc/group", group)
	}
	return uid, uint32(n), nil
}

// readEtc returns etc/NAME from the topmost layer that has it. It never
// follows a link out of the layer: a link there is treated as absent.
func (s *Spec) readEtc(name string) string {
	for _, l := range s.Layers {
		p := filepath.Join(l, "etc", name)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > 4<<20 {
			return ""
		}
		b, err := os.ReadFile(p)
		if err == nil {
			return string(b)
		}
	}
	return ""
}

// findEntry finds the line of a passwd or group file whose first field is
// key, or whose field idx is key when key is numeric.
func findEntry(file, key string, idx int) ([]string, bool) {
	_, numErr := strconv.ParseUint(key, 10, 32)
	sc := bufio.NewScanner(strings.NewReader(file))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 {
			continue
		}
		if f[0] == key || numErr == nil && f[idx] == key {
			return f, true
		}
	}
	return nil, false
}
