package restore

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// restoreFSGhostCwd runs restoreFS; a working directory that was removed
// (a ghost directory) is made again at its path, with its owner and mode,
// for the process to enter, and removed again, so that the process's cwd
// is a removed directory as before. Its path must be free.
func (r *restorer) restoreFSGhostCwd() error {
	id := r.c.fs.GetCwdId()
	g, ok := r.c.ghosts[id]
	if !ok {
		return r.restoreFS()
	}
	if g.e.GetMode()&unix.S_IFMT != unix.S_IFDIR || len(g.data) != 0 {
		return fmt.Errorf("%w: working directory %d: a ghost of mode %#o with %d bytes, not an empty directory", ErrImage, id, g.e.GetMode(), len(g.data))
	}
	name := r.c.files[id].Reg.GetName()
	if err := os.Mkdir(name, 0o700); err != nil {
		return fmt.Errorf("make the removed working directory again: %w", err)
	}
	r.log.Info("the working directory was removed: made again for the chdir", "path", name)
	err := errors.Join(unix.Chmod(name, g.e.GetMode()&0o7777), os.Lchown(name, int(g.e.GetUid()), int(g.e.GetGid())))
	if err == nil {
		err = r.restoreFS()
	}
	if rmErr := os.Remove(name); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove the working directory again: %w", rmErr))
	}
	return err
}
