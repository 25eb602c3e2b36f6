package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/proc"
)

// dumpCwd records the working directory and returns its file entry. One
// that was removed is kept as a ghost directory (CRIU's ghost file of
// mode S_IFDIR): a restore makes it again at its path for as long as it
// needs it, then removes it. A removed directory is empty for good, so its
// owner and mode are all there is to keep.
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
		return d.files.regPath(cwd, unix.O_RDONLY|unix.O_DIRECTORY), nil
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
	id := d.files.regPath(path, unix.O_RDONLY|unix.O_DIRECTORY)
	t := d.files
	gid := uint32(len(t.ghosts) + 1)
	t.ghosts = append(t.ghosts, ghost{id: gid, e: &ghostfile.GhostFileEntry{
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid), Mode: proto.Uint32(st.Mode),
		Dev: proto.Uint32(uint32(st.Dev)), Ino: proto.Uint64(st.Ino), Size: proto.Uint64(0),
	}})
	t.remaps = append(t.remaps, &remap.RemapFilePathEntry{
		OrigId: proto.Uint32(id), RemapId: proto.Uint32(gid), RemapType: remap.RemapType_GHOST.Enum(),
	})
	return id, nil
}
