package dump

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// images is what a dump writes of one process but its pages and
// descriptors.
type images struct {
	threads []uint32        // the leader first
	cores   []*pb.CoreEntry // in the order of threads, without their thread_info
	// infos are the threads' registers, FPU states and TLS (thread_info),
	// in the order of threads, held encoded until their cores are
	// written: decoded, those of 1,000 threads took 2.6 MB, the most of
	// what their dump held.
	infos [][]byte
	ids   *pb.TaskKobjIdsEntry
	// mm is the mm image, whose VMAs are written as the memory step
	// lists them (a record in parts), and mmHead its other fields, which
	// follow them.
	mm     *image.RecordWriter
	mmHead pb.MmEntry
	fs     *pb.FsEntry
}

func (im *images) write(dir *image.Dir, pid uint32) error {
	for i, c := range im.cores {
		if err := im.writeCore(dir, i, c); err != nil {
			return err
		}
	}
	if err := dir.WriteImage(image.IDs, pid, im.ids); err != nil {
		return err
	}
	if err := im.mm.Finish(&im.mmHead); err != nil {
		return err
	}
	return dir.WriteImage(image.FS, pid, im.fs)
}

// holdThreadInfo takes the thread_info out of core, the next thread's,
// and holds it encoded.
func (im *images) holdThreadInfo(core *pb.CoreEntry) error {
	b, err := pb.Marshal(core.ThreadInfo)
	if err != nil {
		return fmt.Errorf("encode thread_info: %w", err)
	}
	core.ThreadInfo = nil
	im.infos = append(im.infos, b)
	return nil
}

// writeCore writes the core of the i-th thread, with its thread_info.
func (im *images) writeCore(dir *image.Dir, i int, c *pb.CoreEntry) error {
	info := &pb.ThreadInfoX86{}
	if err := pb.Unmarshal(im.infos[i], info); err != nil {
		return fmt.Errorf("tid %d: decode thread_info: %w", im.threads[i], err)
	}
	c.ThreadInfo = info
	defer func() { c.ThreadInfo, im.infos[i] = nil, nil }()
	return dir.WriteImage(image.Core, im.threads[i], c)
}
