package dump

import (
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// images is what a dump writes of one process but its pages and
// descriptors.
type images struct {
	threads []uint32        // the leader first
	cores   []*pb.CoreEntry // in the order of threads
	ids     *pb.TaskKobjIdsEntry
	mm      pb.MmBuilder
	fs      *pb.FsEntry
}

func (im *images) write(dir *image.Dir, pid uint32) error {
	for i, c := range im.cores {
		if err := dir.WriteImage(image.Core, im.threads[i], c); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		kind image.Kind
		msg  pb.Message
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
