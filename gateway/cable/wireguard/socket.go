package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"strait.dev/strait/pkg/nodenet"
)

// SocketDir is where the userspace device (wireguard-go) puts its UAPI
// control socket, <SocketDir>/<interface>.sock, as wg(8) and wgctrl look
// for it.
const SocketDir = nodenet.WireGuardSocketDir

// RemoveStaleSocket removes the UAPI socket of interface iface in dir when
// nothing listens on it any more: the socket of a userspace device whose
// process was killed (kill -9 leaves it; a clean Close unlinks it). It
// reports whether it removed one. A socket that a live process listens on,
// and a file that is not a socket, are left alone; a missing one is no
// error. Errors are from reading or removing the file.
func RemoveStaleSocket(dir, iface string) (bool, error) {
	path := filepath.Join(dir, iface+".sock")
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("wireguard: UAPI socket %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return false, nil
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return false, nil // in use
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // removed meanwhile
		}
		return false, fmt.Errorf("wireguard: UAPI socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("wireguard: remove the stale UAPI socket %s: %w", path, err)
	}
	return true, nil
}
