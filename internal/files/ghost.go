package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
)

// An unlinked regular file held open is a REG entry whose contents are
// saved in a ghost file image, tied to it by a remap-fpath.img entry; a
// restore recreates the file, opens it and unlinks it again.

// ghostTable is what a dump saves of unlinked files.
type ghostTable struct {
	ghosts []ghost
	remaps []*remap.RemapFilePathEntry
}

// ghost is an unlinked file's saved contents.
type ghost struct {
	id   uint32
	e    *ghostfile.GhostFileEntry
	data []byte
}

// takeGhost saves the contents of the unlinked file of descriptor d, for
// the REG entry id.
func (t *Table) takeGhost(d *desc, id uint32) error {
	f, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read unlinked file: %w", err)
	}
	t.remapToGhost(id, t.addGhost(&d.st, data))
	return nil
}

// addGhost saves an unlinked file of status st and contents data as a
// ghost file and returns its id.
func (t *Table) addGhost(st *unix.Stat_t, data []byte) uint32 {
	gid := uint32(len(t.ghosts) + 1)
	t.ghosts = append(t.ghosts, ghost{id: gid, data: data, e: &ghostfile.GhostFileEntry{
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid), Mode: proto.Uint32(st.Mode),
		Dev: proto.Uint32(uint32(st.Dev)), Ino: proto.Uint64(st.Ino), Size: proto.Uint64(uint64(len(data))),
	}})
	return gid
}

// remapToGhost ties the REG entry id to the ghost file gid.
func (t *Table) remapToGhost(id, gid uint32) {
	t.remaps = append(t.remaps, &remap.RemapFilePathEntry{
		OrigId: proto.Uint32(id), RemapId: proto.Uint32(gid), RemapType: remap.RemapType_GHOST.Enum(),
	})
}

func (g *ghostTable) write(dir *image.Dir) error {
	if err := dir.WriteImage(image.RemapFpath, 0, messages(g.remaps)...); err != nil {
		return err
	}
	for _, gh := range g.ghosts {
		if err := writeWithPayloads(dir, image.GhostFile, gh.id, 1, func(int) (proto.Message, []byte) {
			return gh.e, gh.data
		}); err != nil {
			return err
		}
	}
	return nil
}

// ghostSet is the unlinked files of a checkpoint, by the id of the REG
// entry they stand for.
type ghostSet struct {
	ghosts map[uint32]ghost
}

func (s *Set) loadGhosts() error {
	remaps, err := image.ReadAll[remap.RemapFilePathEntry](s.dir, image.RemapFpath, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.ghosts = map[uint32]ghost{}
	for _, rm := range remaps {
		if rm.GetRemapType() != remap.RemapType_GHOST {
			return fmt.Errorf("%w: file remap of type %v", ErrUnsupported, rm.GetRemapType())
		}
		if f := s.Files[rm.GetOrigId()]; f == nil || f.Reg == nil {
			return imageErr("remap-fpath.img: file %d is not a regular file entry", rm.GetOrigId())
		}
		r, err := s.dir.Open(image.GhostFile, rm.GetRemapId())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		g := ghost{id: rm.GetRemapId(), e: &ghostfile.GhostFileEntry{}}
		err = r.Next(g.e)
		if err == nil {
			g.data, err = io.ReadAll(r.Payload())
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("%w: ghost file %d: %w", ErrImage, rm.GetRemapId(), err)
		}
		s.ghosts[rm.GetOrigId()] = g
	}
	return nil
}

// recreateGhost writes an unlinked file's contents back, at its old path
// if free, else beside it.
func recreateGhost(name string, g ghost) (string, error) {
	mode := os.FileMode(g.e.GetMode() & 0o7777)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".cryo-ghost-*")
	}
	if err != nil {
		return "", fmt.Errorf("recreate unlinked file %s: %w", name, err)
	}
	_, err = f.Write(g.data)
	err = errors.Join(err, f.Chmod(mode), f.Chown(int(g.e.GetUid()), int(g.e.GetGid())), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("recreate unlinked file %s: %w", name, err)
	}
	return f.Name(), nil
}
