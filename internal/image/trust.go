package image

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A restore runs as root and does what the images say: whoever can write
// an image directory, or an image in it, chooses what root restores. So
// an image directory and its images must belong to root or to the user
// running cryo, and be writable by nobody else; an image is opened
// without following a symlink and without blocking (a FIFO put there
// would hang the restore), and must be a regular file.

// checkTrusted refuses st, the status of path, unless only root or the
// user running cryo can write it.
func checkTrusted(path string, st *unix.Stat_t) error {
	uid := uint32(os.Geteuid())
	if st.Uid != 0 && st.Uid != uid {
		return fmt.Errorf("%w: %s belongs to uid %d (mode %#o): only root's or uid %d's images are restored", ErrUntrusted, path, st.Uid, st.Mode&0o7777, uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s (owner uid %d, mode %#o) is writable by others", ErrUntrusted, path, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// openImage opens the image file name of the directory for reading.
func (d *Dir) openImage(name string) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("open image: %w: %s is a symlink", ErrUntrusted, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open image: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("open image %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("open image: %w: %s is not a regular file (mode %#o)", ErrUntrusted, path, st.Mode)
	}
	if d.checkOwner {
		if err := checkTrusted(path, &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("open image: %w", err)
		}
	}
	return f, nil
}
