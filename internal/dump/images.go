package dump

import (
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
)

// images is what a dump writes of one process but its pages and
// descriptors.
type images struct {
	threads []uint32              // the leader first
	cores   []*criucore.CoreEntry // in the order of threads
	ids     *criucore.TaskKobjIdsEntry
	mm      mm.MmEntry
	fs      *fs.FsEntry
}

func (im *images) write(dir *image.Dir, pid uint32) error {
	for i, c := range im.cores {
		if err := dir.WriteImage(image.Core, im.threads[i], c); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		kind image.Kind
		msg  proto.Message
	}{
		{image.IDs, im.ids},
		{image.MM, &im.mm},
		{image.FS, im.fs},
	} {
		if err := dir.WriteImage(w.kind, pid, w.msg); err != nil {
			return err
		}
	}
	return nil
}
