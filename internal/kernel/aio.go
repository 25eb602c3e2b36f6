package kernel

import "fmt"

// AioRing mirrors struct aio_ring, the header of the ring io_setup(2) maps
// into the process (fs/aio.c: in no uapi header, but libaio reads it to
// reap events without a system call, so the kernel keeps it stable).
// io_events follow it. The kernel reads id (the context's index in the
// process's table of contexts: io_submit finds the context by it) and
// head from the process's memory; it writes tail.
type AioRing struct {
	ID, Nr, Head, Tail uint32
	Magic              uint32
	CompatFeatures     uint32
	IncompatFeatures   uint32
	HeaderLength       uint32
}

// What the kernel writes in an aio_ring's header (fs/aio.c).
const (
	AioRingMagic            = 0xa10a10a1
	AioRingCompatFeatures   = 1
	AioRingIncompatFeatures = 0
	// AioRingHeaderSize is sizeof(struct aio_ring), also the size of an
	// io_event.
	AioRingHeaderSize = 32
	IoEventSize       = 32
)

// AioRingEvents is how many io_events a ring of length bytes holds: the
// kernel rounds the ring up to whole pages and fills them.
func AioRingEvents(length uint64) uint64 { return (length - AioRingHeaderSize) / IoEventSize }

// AioNrEvents is the nr_events to give io_setup for a ring of length
// bytes, the most that makes it no longer: the kernel doubles the count
// it is given (after raising it to four per possible CPU), adds 2, and
// rounds the ring up to whole pages (ioctx_alloc, aio_setup_ring). CRIU's
// images hold the same value (aio_ring_entry.nr_req).
func AioNrEvents(length uint64) uint64 { return (AioRingEvents(length) - 2) / 2 }

// Check reports what makes r, read at the start of a mapping of length
// bytes, not the header of a whole ring as io_setup made it.
func (r *AioRing) Check(length uint64) error {
	switch {
	case r.Magic != AioRingMagic:
		return fmt.Errorf("magic %#x, not %#x", r.Magic, AioRingMagic)
	case r.CompatFeatures != AioRingCompatFeatures || r.IncompatFeatures != AioRingIncompatFeatures:
		return fmt.Errorf("features %d, %d (incompatible)", r.CompatFeatures, r.IncompatFeatures)
	case r.HeaderLength != AioRingHeaderSize:
		return fmt.Errorf("header of %d bytes", r.HeaderLength)
	case length < PageSize || uint64(r.Nr) != AioRingEvents(length):
		return fmt.Errorf("%d events where %d bytes hold %d", r.Nr, length, AioRingEvents(length))
	case r.Head >= r.Nr || r.Tail >= r.Nr:
		return fmt.Errorf("head %d, tail %d past its %d events", r.Head, r.Tail, r.Nr)
	}
	return nil
}

// Iocb mirrors struct iocb (include/uapi/linux/aio_abi.h) on a
// little-endian machine: aio_key before aio_rw_flags.
type Iocb struct {
	Data      uint64
	Key       uint32
	RwFlags   uint32
	Opcode    uint16
	Reqprio   int16
	Fildes    uint32
	Buf       uint64
	Nbytes    uint64
	Offset    int64
	Reserved2 uint64
	Flags     uint32
	Resfd     uint32
}

// IocbCmdPwrite is IOCB_CMD_PWRITE (include/uapi/linux/aio_abi.h).
const IocbCmdPwrite = 1
