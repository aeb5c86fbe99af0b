package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fsEntry is one file, directory or symbolic link of an image's filesystem.
type fsEntry struct {
	// Path is the path in the image, without a leading slash.
	Path string
	// Mode is the permission bits, with fs.ModeDir or fs.ModeSymlink for
	// a directory or a link.
	Mode fs.FileMode
	// Link is a symbolic link's target.
	Link string
	// A regular file's contents: the file Src on this machine, or Data.
	Src  string
	Data []byte
}

// fileset is a filesystem by path.
type fileset map[string]fsEntry

func (s fileset) add(e fsEntry) { s[e.Path] = e }

// layer writes the files as a layer tar, reproducibly: entries sorted by
// path (so a directory comes before what it holds), every directory that is
// not listed made 0755, every time set to mtime, owner and group 0 with no
// names, no access or change times; then compressed by go-containerregistry
// (gzip, its default level) as an OCI layer.
func layer(files fileset, mtime time.Time) (v1.Layer, error) {
	all := fileset{}
	for p, e := range files {
		all[p] = e
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := files[dir]; !ok {
				all[dir] = fsEntry{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := all[p]
		hdr := &tar.Header{
			Name:    p,
			Mode:    int64(e.Mode.Perm()),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.Mode&fs.ModeSticky != 0 { // /tmp
			hdr.Mode |= 0o1000
		}
		var data []byte
		switch {
		case e.Mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case e.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Link, 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			data = e.Data
			if e.Src != "" {
				b, err := os.ReadFile(e.Src)
				if err != nil {
					return nil, err
				}
				data = b
			}
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// archiveDir writes the directory dir (an OCI image layout) as a tar file
// at dst, reproducibly as layer does: sorted, mtime, owner 0, files 0644 and
// directories 0755. It writes dst.tmp and renames it.
func archiveDir(dir, dst string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		paths = append(paths, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, p := range paths {
		host := filepath.Join(dir, filepath.FromSlash(p))
		st, err := os.Lstat(host)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: p, ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		switch {
		case st.IsDir():
			hdr.Name, hdr.Mode, hdr.Typeflag = p+"/", 0o755, tar.TypeDir
		case st.Mode().IsRegular():
			hdr.Size = st.Size()
		default:
			return fmt.Errorf("%s: not a file or directory", host)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			src, err := os.Open(host)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
