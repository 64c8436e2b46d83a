package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// Commit makes the writable layer of a sandbox that ran on the stored
// image base into a new layer on top of base's, and stores the result as
// the image name, like docker commit. writableLayer is the directory the
// sandbox was given as its WritableLayer (see [Store.NewWritableLayer]);
// its "upper" subdirectory holds the changes in overlayfs form, and
// deletions and opaque directories become OCI whiteouts in the new layer.
// The new image inherits base's configuration, with a history entry added
// ([WithComment], [WithAuthor]). writableLayer is left as it is.
func (s *Store) Commit(ctx context.Context, base, writableLayer, name string, opts ...Option) (*ImageInfo, error) {
	o, err := makeOptions("Commit", opts)
	if err != nil {
		return nil, err
	}
	key, err := normalizeName(name)
	if err != nil {
		return nil, err
	}
	upper := filepath.Join(writableLayer, "upper")
	if fi, err := os.Stat(upper); err != nil || !fi.IsDir() {
		if err == nil {
			err = fmt.Errorf("not a directory")
		}
		return nil, fmt.Errorf("rootfs: commit: writable layer %s: %w", upper, err)
	}
	lk, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	info, err := s.Lookup(base)
	if err != nil {
		return nil, err
	}
	rawManifest, err := s.readBlob(info.Digest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("rootfs: commit: %s: manifest: %w", info.Name, err)
	}
	rawConfig, err := s.readBlob(info.ID)
	if err != nil {
		return nil, err
	}

	// The layer: tar -> gzip -> the same path as an imported blob.
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		err := writeUpperTar(ctx, upper, zw)
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
		werr <- err
	}()
	var size int64
	digest, diffID, err := s.storeLayer(ctx, pr, v1.Hash{}, v1.Hash{}, true, o.maxLayerSize, func(n int64) { size += n })
	pr.CloseWithError(errors.New("commit stopped"))
	if err2 := <-werr; err2 != nil {
		return nil, fmt.Errorf("rootfs: commit: %w", err2)
	}
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC()
	newConfig, err := commitConfig(rawConfig, diffID, now, o)
	if err != nil {
		return nil, fmt.Errorf("rootfs: commit: %s: configuration: %w", info.Name, err)
	}
	layerType := types.OCILayer
	if m.MediaType == types.DockerManifestSchema2 {
		layerType = types.DockerLayer
	}
	nm := v1.Manifest{SchemaVersion: 2, MediaType: m.MediaType,
		Config: v1.Descriptor{MediaType: m.Config.MediaType, Size: int64(len(newConfig)), Digest: sha256Hash(newConfig)},
		Layers: append(append([]v1.Descriptor(nil), m.Layers...), v1.Descriptor{MediaType: layerType, Size: size, Digest: digest}),
	}
	newManifest, err := json.Marshal(nm)
	if err != nil {
		return nil, err
	}
	return s.saveImage(key, newManifest, newConfig, "commit of "+info.Name)
}

func (s *Store) readBlob(digest string) ([]byte, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, fmt.Errorf("rootfs: blob %q: %w", digest, err)
	}
	b, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("rootfs: blob %s: %w", digest, err)
	}
	return b, nil
}

// commitConfig adds a layer to an image configuration, keeping every field
// it has, known to go-containerregistry or not.
func commitConfig(raw []byte, diffID v1.Hash, now time.Time, o *options) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	rootfs, _ := doc["rootfs"].(map[string]any)
	if rootfs == nil {
		rootfs = map[string]any{"type": "layers"}
	}
	ids, _ := rootfs["diff_ids"].([]any)
	rootfs["diff_ids"] = append(ids, diffID.String())
	doc["rootfs"] = rootfs
	entry := map[string]any{"created": now.Format(time.RFC3339Nano), "created_by": "hutch commit"}
	if o.comment != "" {
		entry["comment"] = o.comment
	}
	if o.author != "" {
		entry["author"] = o.author
		doc["author"] = o.author
	}
	history, _ := doc["history"].([]any)
	doc["history"] = append(history, entry)
	doc["created"] = now.Format(time.RFC3339Nano)
	return json.Marshal(doc)
}

// writeUpperTar writes an overlayfs upper directory as an OCI layer: a
// 0/0 character device (a deletion) becomes a .wh.NAME entry, an opaque
// directory gets a .wh..wh..opq entry, and overlayfs's own xattrs are
// left out.
func writeUpperTar(ctx context.Context, upper string, w io.Writer) error {
	tw := tar.NewWriter(w)
	asRoot := os.Geteuid() == 0
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		hdr := &tar.Header{Name: rel, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
			ModTime: time.Unix(st.Mtim.Unix()), Format: tar.FormatPAX}
		if !asRoot {
			// Without root the sandbox's only id is root, mapped to us.
			hdr.Uid, hdr.Gid = 0, 0
		}
		xattrs, err := readXattrs(p, st.Mode&unix.S_IFMT == unix.S_IFLNK)
		if err != nil {
			return err
		}
		for _, k := range []string{"trusted.overlay.redirect", "user.overlay.redirect", "trusted.overlay.metacopy", "user.overlay.metacopy"} {
			if _, ok := xattrs[k]; ok {
				return fmt.Errorf("%s has %s: the overlay was mounted with redirect_dir or metacopy, which commit does not support", rel, k)
			}
		}
		opaque := xattrs["trusted.overlay.opaque"] == "y" || xattrs["user.overlay.opaque"] == "y"
		for k, v := range xattrs {
			if strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
				continue
			}
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			if st.Rdev == 0 {
				dir, base := filepath.Split(rel)
				return tw.WriteHeader(&tar.Header{Name: dir + whiteoutPrefix + base, Typeflag: tar.TypeReg,
					ModTime: hdr.ModTime, Format: tar.FormatPAX})
			}
			hdr.Typeflag = tar.TypeChar
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFBLK:
			hdr.Typeflag = tar.TypeBlock
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		case unix.S_IFLNK:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if opaque {
				return tw.WriteHeader(&tar.Header{Name: rel + "/" + whiteoutOpaque, Typeflag: tar.TypeReg,
					ModTime: hdr.ModTime, Format: tar.FormatPAX})
			}
			return nil
		case unix.S_IFREG:
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				if first, ok := links[k]; ok {
					hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
					return tw.WriteHeader(hdr)
				}
				links[k] = rel
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.CopyN(tw, f, st.Size); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			return nil
		default:
			return nil // sockets
		}
		return tw.WriteHeader(hdr)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// readXattrs returns the extended attributes of p (not following a link).
func readXattrs(p string, link bool) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ERANGE {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if err == unix.ENOTSUP || n == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || link && !strings.HasPrefix(name, "trusted.") {
			continue
		}
		v, err := getXattr(p, name)
		if err != nil {
			continue // gone meanwhile, or not readable
		}
		out[name] = v
	}
	return out, nil
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if err == unix.ERANGE {
			if n, err = unix.Lgetxattr(p, name, nil); err != nil {
				return "", err
			}
			buf = make([]byte, n)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
