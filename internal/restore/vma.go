package restore

import (
	"encoding/binary"
	"fmt"
	"iter"

	"github.com/cryo-cr/cryo/internal/chunked"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// vma is a VMA of the image: what the restore uses of its vma_entry.
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

// vmaList holds a process's VMAs, in their order in the image, packed:
// each field a varint, a VMA's start from the end of the one before, in
// chunks that are never copied to grow. The VMAs are live from
// the load to the end, and the GC lets the heap grow to twice what is
// live before it collects: 60,000 took 5.1 MB as vma_entry messages and
// 3.4 MB as vma structs, which set the restore's peak memory; packed,
// they take 0.7 MB, and a walk decodes them in 1.4 ms.
type vmaList struct {
	packed chunked.Bytes
	last   uint64 // the end of the last VMA
	// statuses are the status bits of every VMA, ORed: a walk for the
	// VMAs of a kind none has is skipped (a walk of 60,000 takes 1.4 ms,
	// and a restore walks them for shared memory alone five times).
	statuses uint32
	n        int // how many
}

// any reports whether a VMA has a status bit of mask.
func (l *vmaList) any(mask uint32) bool { return l.statuses&mask != 0 }

// maxPackedVMA is the most bytes add packs a VMA in: eight varints and a
// byte.
const maxPackedVMA = 8*binary.MaxVarintLen64 + 1

// add appends v.
func (l *vmaList) add(v *vma) {
	c := l.packed.Tail(maxPackedVMA)
	b := binary.AppendVarint(*c, int64(v.start-l.last))
	b = binary.AppendVarint(b, int64(v.end-v.start))
	for _, u := range []uint64{v.pgoff, v.shmid, v.madv, uint64(v.prot), uint64(v.flags), uint64(v.status)} {
		b = binary.AppendUvarint(b, u)
	}
	ro := byte(0)
	if v.readOnly {
		ro = 1
	}
	*c, l.last = append(b, ro), v.end
	l.statuses |= v.status
	l.n++
}

// all yields the VMAs in order, each decoded into the same vma: one kept
// past its step must be copied.
func (l *vmaList) all() iter.Seq[*vma] {
	return func(yield func(*vma) bool) {
		for d := l.reader(); d.ok; d.next() {
			if !yield(&d.v) {
				return
			}
		}
	}
}

// reader returns a vmaReader at the first VMA.
func (l *vmaList) reader() *vmaReader {
	d := &vmaReader{chunks: l.packed.Chunks()}
	d.next()
	return d
}

// vmaReader decodes the VMAs of a vmaList in order.
type vmaReader struct {
	chunks [][]byte // those after b
	b      []byte   // what is left to decode of a chunk
	prev   uint64   // the end of the VMA before
	v      vma      // the current VMA, if ok
	ok     bool
}

// next moves to the next VMA; ok is false past the last.
func (d *vmaReader) next() {
	for len(d.b) == 0 && len(d.chunks) > 0 {
		d.b, d.chunks = d.chunks[0], d.chunks[1:]
	}
	if d.ok = len(d.b) > 0; !d.ok {
		return
	}
	// Most fields take a byte, read in place: a walk of 60,000 VMAs
	// takes 1.4 ms, where one call a field took 1.8-2.1.
	var f [8]uint64
	b, i := d.b, 0
	for k := range f {
		if c := b[i]; c < 0x80 {
			f[k] = uint64(c)
			i++
			continue
		}
		u, n := binary.Uvarint(b[i:])
		f[k] = u
		i += n
	}
	d.v.start = d.prev + unzigzag(f[0])
	d.v.end = d.v.start + unzigzag(f[1])
	d.v.pgoff, d.v.shmid, d.v.madv = f[2], f[3], f[4]
	d.v.prot, d.v.flags, d.v.status = uint32(f[5]), uint32(f[6]), uint32(f[7])
	d.v.readOnly, d.b = b[i] != 0, b[i+1:]
	d.prev = d.v.end
}

// unzigzag undoes the zig-zag encoding of binary.AppendVarint.
func unzigzag(u uint64) uint64 { return uint64(int64(u>>1) ^ -int64(u&1)) }

// seek moves past the VMAs that end at or before addr, which must not be
// below the address of an earlier seek: the VMAs are ordered and
// disjoint (checkVMAs). It reports whether a VMA is left.
func (d *vmaReader) seek(addr uint64) bool {
	for d.ok && d.v.end <= addr {
		d.next()
	}
	return d.ok
}

// at returns the VMA holding addr, nil if none, as seek moves.
func (d *vmaReader) at(addr uint64) *vma {
	if d.seek(addr) && d.v.start <= addr {
		return &d.v
	}
	return nil
}

// readMM reads the process's mm image: its VMAs into c.vmas, the guard
// regions that follow them into c.guards.
func (c *checkpoint) readMM() error {
	c.mm = &pb.MmEntry{}
	var e pb.VmaEntry
	var misplaced error
	err := c.dir.ReadImageEach(image.MM, uint32(c.pid), c.mm, pb.MmVmasField, &e, func(i int) {
		v := vmaOf(&e)
		switch {
		case v.status&image.VMAAreaGuard != 0:
			c.guards = append(c.guards, v)
		case len(c.guards) > 0 && misplaced == nil:
			g := c.guards[0]
			misplaced = imageErr("mm-%d.img: guard region %d at %#x-%#x before a VMA", c.pid, i-len(c.guards), g.start, g.end)
		default:
			c.vmas.add(&v)
		}
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	return misplaced
}
