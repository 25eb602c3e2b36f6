package dump

import (
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// Native AIO contexts (io_setup): a context shows in the maps as its ring,
// a shared mapping of a file of the kernel's aio filesystem, whose address
// is the context's id. The ring is kept as CRIU keeps it: a VMA of status
// VMAAreaAIORing whose pages are dumped, and an entry in the mm image's
// aios, from which a restore makes a context again (restore/aio.go).
// Completed events the process has not reaped are in the ring's pages,
// and so kept. Requests in flight are not: the kernel shows them nowhere
// (neither the count of a context's requests nor the requests), so the
// dump sees only those that complete while it holds the process frozen,
// which write their events into the ring: the ring's tail, read again
// as late as the dump allows, has moved.

// aioRingPath is what the maps show for the ring of an AIO context.
const aioRingPath = "/[aio] (deleted)"

// aioRing is the ring of an AIO context as the dump first read it.
type aioRing struct {
	start, end uint64
	nr, tail   uint32
}

// recordAioRing reads the header of the ring mapped at start-end, refuses
// one that is not a whole ring as io_setup made it (part of one, split by
// an mprotect, or written over), and records it in the mm image's aios.
func (d *dumper) recordAioRing(mem *os.File, start, end uint64) error {
	h, err := readAioRing(mem, start)
	if err != nil {
		return err
	}
	if end-start > math.MaxUint32 {
		return fmt.Errorf("%w: AIO ring at %#x-%#x of pid %d: larger than an image holds", ErrUnsupported, start, end, d.pid)
	}
	if err := h.Check(end - start); err != nil {
		return fmt.Errorf("%w: AIO ring at %#x-%#x of pid %d is not a whole ring as io_setup made it: %w", ErrUnsupported, start, end, d.pid, err)
	}
	d.images.mmHead.Aios = append(d.images.mmHead.Aios, &pb.AioRingEntry{
		Id: start, NrReq: uint32(kernel.AioNrEvents(end - start)), RingLen: uint32(end - start),
	})
	d.aioRings = append(d.aioRings, aioRing{start: start, end: end, nr: h.Nr, tail: h.Tail})
	return nil
}

// readAioRing reads the header of the ring at addr.
func readAioRing(mem *os.File, addr uint64) (*kernel.AioRing, error) {
	b := make([]byte, kernel.AioRingHeaderSize)
	if _, err := mem.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("read AIO ring at %#x: %w", addr, err)
	}
	var h kernel.AioRing
	if err := kernel.Decode(b, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// refuseAioInFlight refuses the dump of a process an event of whose AIO
// rings came since the ring was first read: a request was in flight,
// which a restore could not make again, and the pages read of the ring
// may not hold its event. It runs while the process is frozen still, as
// late as the dump allows.
func (d *dumper) refuseAioInFlight() error {
	if len(d.aioRings) == 0 {
		return nil
	}
	mem, err := proc.Open(proc.Path(d.view, "mem"), unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer mem.Close()
	for _, r := range d.aioRings {
		h, err := readAioRing(mem, r.start)
		if err != nil {
			return err
		}
		if h.Tail != r.tail {
			n := (h.Tail + r.nr - r.tail) % r.nr
			return fmt.Errorf("%w: AIO context %#x (ring %#x-%#x) of pid %d had requests in flight: %d completed during the dump, and a restore cannot make a request in flight again", ErrUnsupported, r.start, r.start, r.end, d.pid, n)
		}
	}
	return nil
}
