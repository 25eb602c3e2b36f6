package restore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// openFiles recreates the descriptor table (see files.Restorer.OpenAll),
// unless it is the parent's, which the parent made, and gives a shell job
// back the foreground of its terminal.
func (r *restorer) openFiles() error {
	if r.sharesFiles() {
		return nil
	}
	if err := r.files.OpenAll(); err != nil {
		return err
	}
	notes, err := r.files.Foreground(int(r.c.task.GetPgid()))
	for _, n := range notes {
		r.log.Warn(n)
	}
	return err
}

// restoreFS sets the working directory, root and umask.
func (r *restorer) restoreFS() error {
	root := r.c.files.Files[r.c.fs.GetRootId()].Reg.GetName()
	if root != "/" {
		return fmt.Errorf("%w: root directory %s", ErrUnsupported, root)
	}
	cwd, err := r.files.Path(r.c.fs.GetCwdId())
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	scratch, err := r.tr.WriteString(r.pid, cwd)
	if err != nil {
		return err
	}
	if err := r.sys(unix.SYS_CHDIR, scratch); err != nil {
		return fmt.Errorf("chdir %s: %w", r.c.files.Files[r.c.fs.GetCwdId()].Reg.GetName(), err)
	}
	if err := r.sys(unix.SYS_UMASK, uint64(r.c.fs.GetUmask())); err != nil {
		return fmt.Errorf("umask: %w", err)
	}
	return nil
}
