package cpu

import (
	"encoding/binary"
	"fmt"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

func errorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrXState, fmt.Sprintf(format, a...))
}

// Layout of the standard-format XSAVE area as NT_X86_XSTATE carries it.
const (
	fxsaveSize    = 512
	xsaveHdrSize  = 64
	swReservedOff = 464 // the kernel puts the task's XCR0 here
	xstateBVOff   = 512
	xcompBVOff    = 520
	legacyMask    = 0x3 // x87 and SSE live in the FXSAVE area
)

// imageComponents are the XSAVE components CRIU's image can hold, beyond
// the FXSAVE area, and which field of user_x86_xsave_entry holds each.
var imageComponents = []struct {
	c Component
	// u32 or u64 selects the field; exactly one is set.
	u32 func(*pb.UserX86XsaveEntry) *[]uint32
	u64 func(*pb.UserX86XsaveEntry) *[]uint64
}{
	{c: 2, u32: func(x *pb.UserX86XsaveEntry) *[]uint32 { return &x.YmmhSpace }},
	{c: 3, u64: func(x *pb.UserX86XsaveEntry) *[]uint64 { return &x.BndregState }},
	{c: 4, u64: func(x *pb.UserX86XsaveEntry) *[]uint64 { return &x.BndcsrState }},
	{c: 5, u64: func(x *pb.UserX86XsaveEntry) *[]uint64 { return &x.OpmaskReg }},
	{c: 6, u64: func(x *pb.UserX86XsaveEntry) *[]uint64 { return &x.ZmmUpper }},
	{c: 7, u64: func(x *pb.UserX86XsaveEntry) *[]uint64 { return &x.Hi16Zmm }},
	{c: 9, u32: func(x *pb.UserX86XsaveEntry) *[]uint32 { return &x.Pkru }},
}

// ImageMask is the set of components CRIU's image format can carry.
func ImageMask() uint64 {
	m := uint64(legacyMask)
	for _, ic := range imageComponents {
		m |= 1 << ic.c
	}
	return m
}

var le = binary.LittleEndian

// XStateToImage converts an NT_X86_XSTATE buffer taken on this CPU to
// CRIU's FPU state. It refuses state CRIU cannot represent (AMX tiles,
// APX), so a dump never silently loses registers.
func (h *Host) XStateToImage(b []byte) (*pb.UserX86FpregsEntry, error) {
	if len(b) < fxsaveSize {
		return nil, errorf("%d-byte FPU state, want at least %d", len(b), fxsaveSize)
	}
	e := &pb.UserX86FpregsEntry{
		Cwd:       uint32(le.Uint16(b[0:])),
		Swd:       uint32(le.Uint16(b[2:])),
		Twd:       uint32(le.Uint16(b[4:])),
		Fop:       uint32(le.Uint16(b[6:])),
		Rip:       le.Uint64(b[8:]),
		Rdp:       le.Uint64(b[16:]),
		Mxcsr:     le.Uint32(b[24:]),
		MxcsrMask: le.Uint32(b[28:]),
		StSpace:   words32(b[32:160]),
		XmmSpace:  words32(b[160:416]),
		Padding:   words32(b[416:512]),
	}
	if len(b) < fxsaveSize+xsaveHdrSize {
		return e, nil
	}
	bv := le.Uint64(b[xstateBVOff:])
	if extra := bv &^ ImageMask(); extra != 0 {
		return nil, errorf("thread uses %s, which the image format cannot hold", Names(extra))
	}
	x := &pb.UserX86XsaveEntry{XstateBv: bv}
	for _, ic := range imageComponents {
		off, size, ok := h.component(ic.c, len(b))
		if !ok {
			continue
		}
		comp := b[off : off+size]
		if ic.u32 != nil {
			*ic.u32(x) = words32(comp)
		} else {
			*ic.u64(x) = words64(comp)
		}
	}
	e.Xsave = x
	return e, nil
}

// XStateFromImage builds an NT_X86_XSTATE buffer for this CPU from CRIU's
// FPU state. Components this CPU lacks are left out (their registers
// start at init state); one in use (InUse) is an error unless
// dropMissing.
func (h *Host) XStateFromImage(e *pb.UserX86FpregsEntry, dropMissing bool) ([]byte, error) {
	size := max(int(h.XSaveSize), fxsaveSize+xsaveHdrSize)
	b := make([]byte, size)
	le.PutUint16(b[0:], uint16(e.GetCwd()))
	le.PutUint16(b[2:], uint16(e.GetSwd()))
	le.PutUint16(b[4:], uint16(e.GetTwd()))
	le.PutUint16(b[6:], uint16(e.GetFop()))
	le.PutUint64(b[8:], e.GetRip())
	le.PutUint64(b[16:], e.GetRdp())
	le.PutUint32(b[24:], e.GetMxcsr())
	le.PutUint32(b[28:], e.GetMxcsrMask())
	for _, f := range []struct {
		w   []uint32
		off int
		n   int
	}{{e.StSpace, 32, 32}, {e.XmmSpace, 160, 64}} {
		if len(f.w) != f.n {
			return nil, errorf("%d FPU state words at offset %d, want %d", len(f.w), f.off, f.n)
		}
		putWords32(b[f.off:], f.w)
	}
	le.PutUint64(b[swReservedOff:], h.XCR0)

	x := e.GetXsave()
	bv := uint64(legacyMask)
	if x != nil {
		bv = x.GetXstateBv()
	}
	if missing := bv &^ h.XCR0; missing != 0 {
		if used := missing & InUse(x); used != 0 && !dropMissing {
			return nil, fmt.Errorf("%w: %s (register state in use; this CPU has %s)", ErrMissingFeatures, Names(used), Names(h.XCR0))
		}
		bv &= h.XCR0
	}
	le.PutUint64(b[xstateBVOff:], bv)
	le.PutUint64(b[xcompBVOff:], 0) // standard format
	// A thread from a CPU without protection keys gets the PKRU the kernel
	// gives new threads; left out, the kernel would set 0 (no key denied).
	if off, _, ok := h.component(pkruComponent, len(b)); ok && bv&(1<<pkruComponent) == 0 {
		le.PutUint32(b[off:], pkruDefault)
		le.PutUint64(b[xstateBVOff:], bv|1<<pkruComponent)
	}
	if x == nil {
		return b, nil
	}
	for _, ic := range imageComponents {
		if bv&(1<<ic.c) == 0 {
			continue
		}
		off, size, ok := h.component(ic.c, len(b))
		if !ok {
			continue
		}
		var n int
		if ic.u32 != nil {
			n = 4 * len(*ic.u32(x))
			putWords32(b[off:off+size], *ic.u32(x))
		} else {
			n = 8 * len(*ic.u64(x))
			putWords64(b[off:off+size], *ic.u64(x))
		}
		if n != size {
			return nil, errorf("%s state is %d bytes, this CPU's is %d", ic.c, n, size)
		}
	}
	return b, nil
}

// component returns where a component lives in a buffer of length n.
func (h *Host) component(c Component, n int) (off, size int, ok bool) {
	os, found := h.offsets[c]
	off, size = int(os[0]), int(os[1])
	return off, size, found && size > 0 && off+size <= n
}

func words32(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = le.Uint32(b[4*i:])
	}
	return w
}

func words64(b []byte) []uint64 {
	w := make([]uint64, len(b)/8)
	for i := range w {
		w[i] = le.Uint64(b[8*i:])
	}
	return w
}

// putWords32 writes as many words as fit.
func putWords32(b []byte, w []uint32) {
	for i := range min(len(w), len(b)/4) {
		le.PutUint32(b[4*i:], w[i])
	}
}

func putWords64(b []byte, w []uint64) {
	for i := range min(len(w), len(b)/8) {
		le.PutUint64(b[8*i:], w[i])
	}
}
