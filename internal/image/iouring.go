package image

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// IOUring is an io_uring instance, which CRIU's images have no entry for:
// files.img holds an EXT entry of its id (so that CRIU's tools still read
// files.img), and cryo-io-uring.img this record. Rings holds the shared
// memory of its SQ and CQ rings (one region: IORING_FEAT_SINGLE_MMAP),
// SQEs its submission queue entries, both as the dump read them while
// the process was frozen. SqOff and CqOff are the offsets in Rings the
// dumping kernel gave io_uring_setup (struct io_sqring_offsets: head,
// tail, ring_mask, ring_entries, flags, dropped, array; struct
// io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow,
// cqes, flags), which the process's library keeps pointers by.
type IOUring struct {
	// ID is the ring's files.img entry.
	ID                   uint32
	SqEntries, CqEntries uint32
	// Flags are the IORING_SETUP_* flags to make it with.
	Flags          uint32
	SqHead, SqTail uint32
	CqHead, CqTail uint32
	SqOff, CqOff   [IOUringOffsets]uint32
	Rings, SQEs    []byte
}

// IOUringSetupNoSQArray is IORING_SETUP_NO_SQARRAY: the ring has no SQ
// array, and its SQ offsets' array is not one.
const IOUringSetupNoSQArray = 1 << 16

// IOUringSetupSQE128 and IOUringSetupCQE32 are IORING_SETUP_SQE128 and
// CQE32: SQEs of 128 bytes, CQEs of 32.
const (
	IOUringSetupSQE128 = 1 << 10
	IOUringSetupCQE32  = 1 << 11
)

// SQESize is the size of the ring's SQEs.
func (u *IOUring) SQESize() uint64 {
	if u.Flags&IOUringSetupSQE128 != 0 {
		return 2 * IOUringSQESize
	}
	return IOUringSQESize
}

// CQESize is the size of the ring's CQEs.
func (u *IOUring) CQESize() uint64 {
	if u.Flags&IOUringSetupCQE32 != 0 {
		return 2 * IOUringCQESize
	}
	return IOUringCQESize
}

// IOUringOffsets is the count of offsets of an io_sqring_offsets, or an
// io_cqring_offsets, that IOUring keeps.
const IOUringOffsets = 7

// The IOUring.SqOff and CqOff offsets by name.
const (
	SqOffHead, SqOffTail, SqOffRingMask, SqOffRingEntries, SqOffFlags, SqOffDropped, SqOffArray = 0, 1, 2, 3, 4, 5, 6
	CqOffHead, CqOffTail, CqOffRingMask, CqOffRingEntries, CqOffOverflow, CqOffCqes, CqOffFlags = 0, 1, 2, 3, 4, 5, 6
)

// The sizes of an SQE and a CQE (without IORING_SETUP_SQE128, CQE32), and
// the largest rings io_uring_setup makes (IORING_MAX_ENTRIES,
// IORING_MAX_CQ_ENTRIES).
const (
	IOUringSQESize    = 64
	IOUringCQESize    = 16
	IOUringMaxEntries = 32768
	IOUringMaxCQ      = 2 * IOUringMaxEntries
)

func (u IOUring) message() *pb.IoUringEntry {
	return &pb.IoUringEntry{Id: u.ID, SqEntries: u.SqEntries, CqEntries: u.CqEntries, Flags: u.Flags,
		SqHead: u.SqHead, SqTail: u.SqTail, CqHead: u.CqHead, CqTail: u.CqTail,
		SqOff: u.SqOff[:], CqOff: u.CqOff[:], Rings: u.Rings, Sqes: u.SQEs}
}

func ioUringOf(m *pb.IoUringEntry) (IOUring, error) {
	u := IOUring{ID: m.GetId(), SqEntries: m.GetSqEntries(), CqEntries: m.GetCqEntries(), Flags: m.GetFlags(),
		SqHead: m.GetSqHead(), SqTail: m.GetSqTail(), CqHead: m.GetCqHead(), CqTail: m.GetCqTail(),
		Rings: m.GetRings(), SQEs: m.GetSqes()}
	bad := func(f string, a ...any) (IOUring, error) {
		return u, fmt.Errorf("%w: io_uring %d: %s", ErrRecord, u.ID, fmt.Sprintf(f, a...))
	}
	if len(m.GetSqOff()) != IOUringOffsets || len(m.GetCqOff()) != IOUringOffsets {
		return bad("%d SQ and %d CQ ring offsets, not %d", len(m.GetSqOff()), len(m.GetCqOff()), IOUringOffsets)
	}
	copy(u.SqOff[:], m.GetSqOff())
	copy(u.CqOff[:], m.GetCqOff())
	pow2 := func(n uint32) bool { return n != 0 && n&(n-1) == 0 }
	switch {
	case !pow2(u.SqEntries) || u.SqEntries > IOUringMaxEntries || !pow2(u.CqEntries) || u.CqEntries < u.SqEntries || u.CqEntries > IOUringMaxCQ:
		return bad("%d SQ and %d CQ entries", u.SqEntries, u.CqEntries)
	case u.SqTail-u.SqHead > u.SqEntries || u.CqTail-u.CqHead > u.CqEntries:
		return bad("SQ head %d, tail %d and CQ head %d, tail %d are more than a ring apart", u.SqHead, u.SqTail, u.CqHead, u.CqTail)
	case uint64(len(u.SQEs)) != uint64(u.SqEntries)*u.SQESize():
		return bad("%d bytes of SQEs for %d entries", len(u.SQEs), u.SqEntries)
	}
	for i, off := range append(u.SqOff[:SqOffArray:SqOffArray], u.CqOff[:CqOffCqes]...) {
		if uint64(off)+4 > uint64(len(u.Rings)) || off%4 != 0 {
			return bad("offset %d (%d) outside its %d bytes of rings", i, off, len(u.Rings))
		}
	}
	if end := uint64(u.SqOff[SqOffArray]) + 4*uint64(u.SqEntries); u.Flags&IOUringSetupNoSQArray == 0 && end > uint64(len(u.Rings)) {
		return bad("SQ array ends at %d, past its %d bytes of rings", end, len(u.Rings))
	}
	if end := uint64(u.CqOff[CqOffCqes]) + u.CQESize()*uint64(u.CqEntries); end > uint64(len(u.Rings)) {
		return bad("CQEs end at %d, past its %d bytes of rings", end, len(u.Rings))
	}
	return u, nil
}

// WriteIOUrings writes cryo-io-uring.img.
func (d *Dir) WriteIOUrings(us []IOUring) error {
	return writeOwn(d, IOUrings, us, IOUring.message)
}

// ReadIOUrings reads cryo-io-uring.img; a checkpoint without it (one CRIU
// made, or an older cryo) gives an error wrapping fs.ErrNotExist.
func (d *Dir) ReadIOUrings() ([]IOUring, error) {
	return readOwn(d, IOUrings, ioUringOf)
}
