package restore

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// Native AIO contexts (dump/aio.go): a ring cannot be mapped at an
// address of cryo's choosing, so the vmas step maps plain memory where it
// was, which the pages step fills with the ring's pages; then io_setup
// makes a context in the process, with a ring of the same size, that is
// given the saved position, events and head, and moved over that memory
// with mremap. The kernel follows its ring (aio_ring_mremap): the
// context's id is its ring's address, the old one again.

// checkAios checks the mm image's AIO contexts against the VMAs: each
// context's ring is a VMA of its own at the context's address, of the
// ring's length, which a request of its nr_req fits in, and every ring's
// VMA has a context.
func (c *checkpoint) checkAios() error {
	rings := 0
	for v := range c.vmas.all() {
		if v.status&image.VMAAreaAIORing == 0 {
			continue
		}
		if v.status != image.VMAAreaAIORing || v.flags&unix.MAP_TYPE != unix.MAP_SHARED {
			return imageErr("mm-%d.img: AIO ring VMA at %#x-%#x has status %#x, flags %#x (a shared mapping of that status alone)", c.pid, v.start, v.end, v.status, v.flags)
		}
		rings++
	}
	aios := slices.SortedFunc(slices.Values(c.mm.Aios), func(a, b *pb.AioRingEntry) int { return cmp.Compare(a.GetId(), b.GetId()) })
	vmas := c.vmas.reader()
	for i, a := range aios {
		id, length, nr := a.GetId(), uint64(a.GetRingLen()), uint64(a.GetNrReq())
		if i > 0 && id == aios[i-1].GetId() {
			return imageErr("mm-%d.img: AIO context %#x listed twice", c.pid, id)
		}
		switch v := vmas.at(id); {
		case v == nil || v.start != id || v.status != image.VMAAreaAIORing:
			return imageErr("mm-%d.img: AIO context %#x has no ring VMA at its address", c.pid, id)
		case v.end-v.start != length:
			return imageErr("mm-%d.img: AIO context %#x has a ring of %d bytes in a VMA of %d", c.pid, id, length, v.end-v.start)
		case nr == 0 || nr > kernel.AioNrEvents(length):
			return imageErr("mm-%d.img: AIO context %#x asks for %d requests, which a ring of %d bytes does not fit", c.pid, id, nr, length)
		}
	}
	if rings != len(aios) {
		return imageErr("mm-%d.img: %d AIO ring VMAs for %d AIO contexts", c.pid, rings, len(aios))
	}
	return nil
}

// makeAioRings makes the process's AIO contexts again, their rings over
// the memory the pages step filled with their pages.
func (r *restorer) makeAioRings() error {
	if len(r.c.mm.Aios) == 0 {
		return nil
	}
	null, err := r.open("/dev/null", unix.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null for the AIO contexts: %w", err)
	}
	defer r.sys(unix.SYS_CLOSE, null)
	for _, a := range r.c.mm.Aios {
		if err := r.makeAioRing(a, null); err != nil {
			return fmt.Errorf("AIO context %#x: %w", a.GetId(), err)
		}
	}
	return nil
}

// makeAioRing makes the context a again, null the process's descriptor
// of /dev/null.
func (r *restorer) makeAioRing(a *pb.AioRingEntry, null uint64) error {
	old, length := a.GetId(), uint64(a.GetRingLen())
	saved := make([]byte, length)
	if err := r.tr.ReadMem(old, saved); err != nil {
		return err
	}
	var h kernel.AioRing
	if err := kernel.Decode(saved[:kernel.AioRingHeaderSize], &h); err != nil {
		return err
	}
	if err := h.Check(length); err != nil {
		return fmt.Errorf("%w: pagemap-%d.img: the ring's pages: %w", ErrImage, r.pid, err)
	}
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	// io_setup takes a zeroed context id and writes the new one there.
	if err := r.tr.WriteValue(scratch, uint64(0)); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_IO_SETUP, uint64(a.GetNrReq()), scratch); err != nil {
		return fmt.Errorf("io_setup %d: %w", a.GetNrReq(), err)
	}
	var ctx uint64
	if err := r.tr.ReadValue(scratch, &ctx); err != nil {
		return err
	}
	ring, err := r.aioRingAt(ctx)
	if err != nil {
		return err
	}
	if ring.Nr != h.Nr {
		return fmt.Errorf("%w: io_setup %d made a ring of %d events, where the process had %d: this machine has more possible CPUs, whose count sets a ring's least size", ErrUnsupported, a.GetNrReq(), ring.Nr, h.Nr)
	}
	if err := r.setAioTail(ctx, &h, null); err != nil {
		return err
	}
	// The saved events, and head, where the new ring's header keeps its
	// own id: its index in the process's table of contexts, by which
	// io_submit finds the context.
	if err := r.tr.WriteMem(ctx+kernel.AioRingHeaderSize, saved[kernel.AioRingHeaderSize:]); err != nil {
		return err
	}
	if err := r.setAioHead(ctx, h.Head); err != nil {
		return err
	}
	at, err := r.tr.Syscall(r.pid, unix.SYS_MREMAP, ctx, length, length, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, old)
	if err == nil && at != old {
		err = fmt.Errorf("moved to %#x", at)
	}
	if err != nil {
		return fmt.Errorf("move the new ring %#x-%#x onto %#x (mremap): %w", ctx, ctx+length, old, err)
	}
	return nil
}

// setAioTail brings the kernel's tail of the new ring at ctx, where it
// writes the next event and which the process cannot set, to saved's: a
// write to /dev/null completes as it is submitted, with an event at the
// tail. The events before saved's head are reaped as they are written,
// so that those from head to tail, which the process has not reaped,
// hold their slots of the ring again: the kernel lets in no more
// requests than the ring has room for the events of.
func (r *restorer) setAioTail(ctx uint64, saved *kernel.AioRing, null uint64) error {
	nr, head, total := uint64(saved.Nr), uint64(saved.Head), uint64(saved.Tail)
	if saved.Tail < saved.Head {
		// Once round the ring.
		total += nr
	}
	if total == 0 {
		return nil
	}
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	// One iocb, then pointers to it, as many as the scratch area holds.
	b := kernel.Encode(kernel.Iocb{Opcode: kernel.IocbCmdPwrite, Fildes: uint32(null), Buf: scratch, Nbytes: 1})
	ptrs := scratch + uint64(len(b))
	most := uint64(scratchSize-len(b)) / 8
	for range most {
		b = binary.LittleEndian.AppendUint64(b, scratch)
	}
	if err := r.tr.WriteMem(scratch, b); err != nil {
		return err
	}
	for done := uint64(0); done < total; {
		reaped := min(done, head)
		if err := r.setAioHead(ctx, uint32(reaped)); err != nil {
			return err
		}
		n := min(total-done, nr-1-(done-reaped), most)
		got, err := r.tr.Syscall(r.pid, unix.SYS_IO_SUBMIT, ctx, n, ptrs)
		if err != nil {
			return fmt.Errorf("io_submit %d writes to /dev/null to move the ring's tail to %d (%d done): %w", n, saved.Tail, done, err)
		}
		done += got
	}
	ring, err := r.aioRingAt(ctx)
	if err != nil {
		return err
	}
	if ring.Tail != saved.Tail {
		return fmt.Errorf("the new ring's tail is %d after %d writes, not %d", ring.Tail, total, saved.Tail)
	}
	return nil
}

// aioRingAt reads the header of the process's ring at ctx.
func (r *restorer) aioRingAt(ctx uint64) (*kernel.AioRing, error) {
	var h kernel.AioRing
	if err := r.tr.ReadValue(ctx, &h); err != nil {
		return nil, fmt.Errorf("read the new AIO ring: %w", err)
	}
	return &h, nil
}

// setAioHead sets the head of the process's ring at ctx: the events
// before it are reaped, as io_getevents reaps them.
func (r *restorer) setAioHead(ctx uint64, head uint32) error {
	h, err := r.aioRingAt(ctx)
	if err != nil {
		return err
	}
	h.Head = head
	return r.tr.WriteValue(ctx, h)
}
