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
	cores   []*pb.CoreEntry // in the order of threads, without their FPU state
	// fpregs are the threads' FPU states, in the order of threads, held
	// encoded until their cores are written: decoded, those of 1,000
	// threads took 2.2 MB, the most of what their dump held.
	fpregs [][]byte
	ids    *pb.TaskKobjIdsEntry
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

// holdFpregs takes the FPU state out of core, the next thread's, and
// holds it encoded.
func (im *images) holdFpregs(core *pb.CoreEntry) error {
	var b []byte
	if fp := core.GetThreadInfo().GetFpregs(); fp != nil {
		var err error
		if b, err = pb.Marshal(fp); err != nil {
			return fmt.Errorf("encode FPU state: %w", err)
		}
		core.ThreadInfo.Fpregs = nil
	}
	im.fpregs = append(im.fpregs, b)
	return nil
}

// writeCore writes the core of the i-th thread, with its FPU state.
func (im *images) writeCore(dir *image.Dir, i int, c *pb.CoreEntry) error {
	if b := im.fpregs[i]; b != nil {
		fp := &pb.UserX86FpregsEntry{}
		if err := pb.Unmarshal(b, fp); err != nil {
			return fmt.Errorf("tid %d: decode FPU state: %w", im.threads[i], err)
		}
		c.ThreadInfo.Fpregs = fp
		defer func() { c.ThreadInfo.Fpregs, im.fpregs[i] = nil, nil }()
	}
	return dir.WriteImage(image.Core, im.threads[i], c)
}
