// oci-layout writes an OCI image layout (a directory, as `skopeo copy oci:DIR` or `crane push`
// read it) holding one image of one layer, without a container daemon: the layer is a root
// filesystem tarball, the config names the entrypoint and the user.
//
// Usage: oci-layout -rootfs rootfs.tar -out DIR -ref NAME:TAG -entrypoint /path [-user 65532:65532]
//
// Everything dated is set to the Unix epoch, so the same tarball gives the same digests.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	rootfs := flag.String("rootfs", "", "root filesystem as an uncompressed tar")
	out := flag.String("out", "", "directory to write the OCI layout into (created; must not hold one)")
	ref := flag.String("ref", "", "name:tag recorded as the image's org.opencontainers.image.ref.name")
	entrypoint := flag.String("entrypoint", "", "absolute path of the program the image runs")
	user := flag.String("user", "65532:65532", "uid:gid the image runs as")
	flag.Parse()
	if *rootfs == "" || *out == "" || *ref == "" || *entrypoint == "" {
		fmt.Fprintln(os.Stderr, "oci-layout: -rootfs, -out, -ref and -entrypoint are required")
		flag.Usage()
		os.Exit(2)
	}
	if err := write(*rootfs, *out, *ref, *entrypoint, *user); err != nil {
		fmt.Fprintf(os.Stderr, "oci-layout: %v\n", err)
		os.Exit(1)
	}
}

func write(rootfs, out, ref, entrypoint, user string) error {
	layer, err := tarball.LayerFromFile(rootfs, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("reading the layer %s: %w", rootfs, err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return fmt.Errorf("adding the layer: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = runtime.GOARCH
	cfg.OS = "linux"
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.Entrypoint = []string{entrypoint}
	cfg.Config.User = user
	cfg.Config.WorkingDir = "/"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return fmt.Errorf("writing the image config: %w", err)
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0).UTC()}); err != nil {
		return err
	}
	if _, err := os.Stat(out + "/index.json"); err == nil {
		return fmt.Errorf("%s already holds an OCI layout; remove it first", out)
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return fmt.Errorf("creating the layout %s: %w", out, err)
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
	}))
}
