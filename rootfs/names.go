package rootfs

import (
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// normalizeName returns the name the store keys an image by:
// "repository:tag", with tag "latest" when s has none, or
// "repository@sha256:...". The repository is kept as written ("busybox"
// stays "busybox"), but must be valid for a registry: lower case,
// [a-z0-9._-/] and an optional registry host first.
func normalizeName(s string) (string, error) {
	repo, tag, digest := splitName(s)
	bad := func(err error) error {
		return fmt.Errorf("rootfs: image name %q: %w: %v", s, fs.ErrInvalid, err)
	}
	if repo == "" {
		return "", bad(fmt.Errorf("empty repository"))
	}
	if _, err := name.NewRepository(repo); err != nil {
		return "", bad(err)
	}
	if digest != "" {
		if _, err := name.NewDigest(repo + "@" + digest); err != nil {
			return "", bad(err)
		}
		return repo + "@" + digest, nil
	}
	if tag == "" {
		tag = "latest"
	}
	if _, err := name.NewTag(repo + ":" + tag); err != nil {
		return "", bad(err)
	}
	return repo + ":" + tag, nil
}

// splitName splits "repo[:tag][@digest]". A colon is a tag separator only
// after the last slash (before it, it is a registry's port).
func splitName(s string) (repo, tag, digest string) {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s, digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		s, tag = s[:i], s[i+1:]
	}
	return s, tag, digest
}

// splitSource splits "PATH[:SUFFIX]" for a transport whose path may itself
// hold colons: the whole string when it names something that exists,
// otherwise the longest prefix before a colon that does.
func splitSource(s string) (path, suffix string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := len(s) - 1; i > 0; i-- {
		if s[i] != ':' {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
