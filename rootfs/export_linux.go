package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Export writes the stored image name into dir as an OCI image layout, the
// form skopeo, umoci, podman and containerd read. dir must not exist, be
// empty, or be an OCI image layout already (the image is added to it,
// replacing one of the same tag). The image is named in the layout's
// index by its tag ([WithTag] picks another). An image stored with Docker
// media types is written with the OCI ones (same blobs, new manifest);
// an OCI image keeps its manifest and digest.
func (s *Store) Export(ctx context.Context, name, dir string, opts ...Option) error {
	o, err := makeOptions("Export", opts)
	if err != nil {
		return err
	}
	info, err := s.Lookup(name)
	if err != nil {
		return err
	}
	tag := o.tag
	if tag == "" {
		_, tag, _ = splitName(info.Name)
	}
	fail := func(err error) error { return fmt.Errorf("rootfs: export %s to %s: %w", info.Name, dir, err) }
	raw, err := s.readBlob(info.Digest)
	if err != nil {
		return fail(err)
	}
	mt := types.MediaType(info.MediaType)
	if mt == types.DockerManifestSchema2 {
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return fail(err)
		}
		m.MediaType, m.Config.MediaType = types.OCIManifestSchema1, types.OCIConfigJSON
		for i := range m.Layers {
			m.Layers[i].MediaType = ociLayerType(m.Layers[i].MediaType)
		}
		if raw, err = json.Marshal(m); err != nil {
			return fail(err)
		}
		mt = types.OCIManifestSchema1
	}

	var p layout.Path
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		if p, err = layout.FromPath(dir); err != nil {
			return fail(err)
		}
	} else {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			return fail(fmt.Errorf("not empty and not an OCI image layout"))
		}
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fail(err)
		}
	}
	digests := []string{info.ID}
	for _, l := range info.Layers {
		digests = append(digests, l.Digest)
	}
	for _, d := range digests {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := v1.NewHash(d)
		if err != nil {
			return fail(err)
		}
		if err := copyBlob(s.blobPath(h), filepath.Join(dir, "blobs", h.Algorithm, h.Hex)); err != nil {
			return fail(err)
		}
	}
	md := sha256Hash(raw)
	if err := writeFileAtomic(filepath.Join(dir, "blobs", md.Algorithm, md.Hex), raw); err != nil {
		return fail(err)
	}
	// Readable by the other tools' users, as they write layouts.
	os.Chmod(filepath.Join(dir, "blobs", md.Algorithm, md.Hex), 0o644)
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: md}
	if plat, err := v1.ParsePlatform(info.Platform); err == nil && info.Platform != "" {
		desc.Platform = plat
	}
	if tag != "" {
		desc.Annotations = map[string]string{annotationRefName: tag}
		if err := p.RemoveDescriptors(match.Annotation(annotationRefName, tag)); err != nil {
			return fail(err)
		}
	}
	if err := p.AppendDescriptor(desc); err != nil {
		return fail(err)
	}
	return nil
}

// ociLayerType maps a Docker layer media type to its OCI twin.
func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	}
	return mt
}

// copyBlob copies a blob to dst unless it is there, through a temporary
// file renamed into place.
func copyBlob(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(out.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(out.Name(), dst)
	}
	if err != nil {
		os.Remove(out.Name())
	}
	return err
}
