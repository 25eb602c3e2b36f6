package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// dumpCwd records the working directory and returns its file entry. One
// that was removed is kept as a ghost directory (files.Table.RemovedDir):
// a restore makes it again at its path for as long as it needs it, then
// removes it.
func (d *dumper) dumpCwd() (uint32, error) {
	cwd, err := proc.ReadCwd(d.pid)
	if err != nil {
		return 0, err
	}
	link := proc.Path(d.pid, "cwd")
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		return 0, fmt.Errorf("stat working directory: %w", err)
	}
	path, removed := strings.CutSuffix(cwd, " (deleted)")
	// A removed directory has no link left; one whose name merely ends so
	// has its own and its "." entry.
	if !removed || st.Nlink != 0 {
		id, err := d.files.RegPath(cwd, link, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return 0, fmt.Errorf("working directory: %w", err)
		}
		return id, nil
	}
	// The restore makes it again at its path: refuse now what it could
	// not do then.
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: the working directory %s was removed, and its path is taken", ErrUnsupported, path)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return 0, fmt.Errorf("%w: the working directory %s was removed, and so was its parent", ErrUnsupported, path)
	}
	d.log.Info("the working directory was removed: dumping it as a ghost directory", "path", path)
	return d.files.RemovedDir(path, link, unix.O_RDONLY|unix.O_DIRECTORY, &st)
}
