package files

import (
	"fmt"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// A removed directory (a working directory, say) is, as in CRIU, a REG
// entry tied to a ghost file of mode S_IFDIR with no contents: a removed
// directory is empty for good, so its owner and mode are all there is to
// keep. A restore makes it again at its path for as long as it needs it.

// RemovedDir returns the entry of directory path, opened with flags, which
// was removed (st is its stat, through the /proc link via), and records it
// as a ghost directory.
func (t *Table) RemovedDir(path, via string, flags uint32, st *unix.Stat_t) (uint32, error) {
	id, err := t.RegPath(path, via, flags)
	if err != nil {
		return 0, err
	}
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

// RemovedDir reports whether entry id stands for a removed directory, and
// if so its ghost's mode (S_IFDIR and permissions), owner and group.
func (s *Set) RemovedDir(id uint32) (mode, uid, gid uint32, removed bool, err error) {
	g, ok := s.ghosts[id]
	if !ok {
		return 0, 0, 0, false, nil
	}
	if g.e.GetMode()&unix.S_IFMT != unix.S_IFDIR || len(g.data) != 0 {
		return 0, 0, 0, false, fmt.Errorf("%w: file %d: a ghost of mode %#o with %d bytes, not an empty directory", ErrImage, id, g.e.GetMode(), len(g.data))
	}
	return g.e.GetMode(), g.e.GetUid(), g.e.GetGid(), true, nil
}
