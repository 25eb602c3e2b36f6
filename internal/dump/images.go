package dump

import (
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
)

// images is everything a dump writes but the pages.
type images struct {
	inventory *inventory.InventoryEntry
	pstree    *pstree.PstreeEntry
	cores     []*criucore.CoreEntry // the leader's first
	ids       *criucore.TaskKobjIdsEntry
	mm        mm.MmEntry
	fs        *fs.FsEntry
	files     *fileTable
	timens    *timens.TimensEntry
	cpu       *cpuinfo.CpuinfoEntry
}

func (im *images) write(dir *image.Dir) error {
	pid := im.pstree.GetPid()
	for i, c := range im.cores {
		if err := dir.WriteImage(image.Core, im.pstree.Threads[i], c); err != nil {
			return err
		}
	}
	files := make([]proto.Message, 0, len(im.files.files))
	for _, f := range im.files.files {
		files = append(files, f)
	}
	fds := make([]proto.Message, 0, len(im.files.fds))
	for _, f := range im.files.fds {
		fds = append(fds, f)
	}
	remaps := make([]proto.Message, 0, len(im.files.remaps))
	for _, r := range im.files.remaps {
		remaps = append(remaps, r)
	}
	memfds := make([]proto.Message, 0, len(im.files.memfdOrder))
	for _, ino := range im.files.memfdOrder {
		memfds = append(memfds, im.files.memfds[ino].e)
	}
	for _, w := range []struct {
		kind image.Kind
		id   uint32
		msgs []proto.Message
	}{
		{image.Inventory, 0, []proto.Message{im.inventory}},
		{image.Pstree, 0, []proto.Message{im.pstree}},
		{image.IDs, pid, []proto.Message{im.ids}},
		{image.MM, pid, []proto.Message{&im.mm}},
		{image.FS, pid, []proto.Message{im.fs}},
		{image.Files, 0, files},
		{image.Fdinfo, filesID, fds},
		{image.RemapFpath, 0, remaps},
		{image.Memfd, 0, memfds},
		{image.Timens, timensID, []proto.Message{im.timens}},
		{image.Cpuinfo, 0, []proto.Message{im.cpu}},
	} {
		if err := dir.WriteImage(w.kind, w.id, w.msgs...); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		kind image.Kind
		data []pipeData
	}{{image.PipesData, im.files.pipes}, {image.FifoData, im.files.fifos}} {
		if err := writeWithPayloads(dir, p.kind, 0, len(p.data), func(i int) (proto.Message, []byte) {
			return p.data[i].e, p.data[i].data
		}); err != nil {
			return err
		}
	}
	for _, g := range im.files.ghosts {
		if err := writeWithPayloads(dir, image.GhostFile, g.id, 1, func(int) (proto.Message, []byte) {
			return g.e, g.data
		}); err != nil {
			return err
		}
	}
	return nil
}

// writeWithPayloads writes an image of n records, each followed by raw
// bytes.
func writeWithPayloads(dir *image.Dir, k image.Kind, id uint32, n int, rec func(int) (proto.Message, []byte)) error {
	w, err := dir.Create(k, id)
	if err != nil {
		return err
	}
	for i := range n {
		m, data := rec(i)
		if err := w.Write(m); err != nil {
			w.Close()
			return err
		}
		if err := w.WritePayload(data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
