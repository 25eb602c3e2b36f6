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
	mode, uid, gid, removed, err := r.c.files.RemovedDir(id)
	if err != nil {
		return err
	}
	if !removed {
		return r.restoreFS()
	}
	name := r.c.files.Files[id].Reg.GetName()
	if err := os.Mkdir(name, 0o700); err != nil {
		return fmt.Errorf("make the removed working directory again: %w", err)
	}
	r.log.Info("the working directory was removed: made again for the chdir", "path", name)
	err = errors.Join(unix.Chmod(name, mode&0o7777), os.Lchown(name, int(uid), int(gid)))
	if err == nil {
		err = r.c.files.OpenMade(id)
	}
	if err == nil {
		err = r.restoreFS()
	}
	if rmErr := os.Remove(name); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove the working directory again: %w", rmErr))
	}
	return err
}
