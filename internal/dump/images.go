package dump

import (
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/files"
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
	files     *files.Table
	timens    *timens.TimensEntry
	cpu       *cpuinfo.CpuinfoEntry
	seccomp   *seccomp.SeccompEntry // nil when no thread has a filter
}

func (im *images) write(dir *image.Dir) error {
	pid := im.pstree.GetPid()
	for i, c := range im.cores {
		if err := dir.WriteImage(image.Core, im.pstree.Threads[i], c); err != nil {
			return err
		}
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
		{image.Timens, timensID, []proto.Message{im.timens}},
		{image.Cpuinfo, 0, []proto.Message{im.cpu}},
	} {
		if err := dir.WriteImage(w.kind, w.id, w.msgs...); err != nil {
			return err
		}
	}
	if im.seccomp != nil {
		if err := dir.WriteImage(image.Seccomp, 0, im.seccomp); err != nil {
			return err
		}
	}
	return im.files.WriteImages(dir, filesID)
}
