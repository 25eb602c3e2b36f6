package restore

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// vma is a VMA of the image: what the restore uses of its vma_entry. A
// process's VMAs are held in one slice of these, read one at a time from
// the mm image (readMM): 60,000 took 5.1 MB as vma_entry messages, one
// object each, and take 3.4 MB so.
type vma struct {
	start, end, pgoff, shmid uint64
	madv                     uint64 // a bit per madvise advice
	prot, flags, status      uint32
	// readOnly says an attachment of System V shared memory was made
	// read-only (sysvReadOnly).
	readOnly bool
}

// vmaOf is what the restore keeps of e.
func vmaOf(e *pb.VmaEntry) vma {
	return vma{start: e.GetStart(), end: e.GetEnd(), pgoff: e.GetPgoff(), shmid: e.GetShmid(), madv: e.GetMadv(),
		prot: e.GetProt(), flags: e.GetFlags(), status: e.GetStatus(), readOnly: sysvReadOnly(e)}
}

// readMM reads the process's mm image, its VMAs into c.vmas.
func (c *checkpoint) readMM() error {
	c.mm = &pb.MmEntry{}
	var e pb.VmaEntry
	err := c.dir.ReadImageEach(image.MM, uint32(c.pid), c.mm, image.MMVmasField, &e, func(i, n int) {
		if c.vmas == nil {
			c.vmas = make([]vma, 0, n)
		}
		c.vmas = append(c.vmas, vmaOf(&e))
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	return nil
}
