//go:build amd64

package cpu

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestReadHost(t *testing.T) {
	h := ReadHost()
	if h.XCR0&legacyMask != legacyMask {
		t.Fatalf("XCR0 %#x lacks x87/SSE", h.XCR0)
	}
	if h.XSaveSize < fxsaveSize+xsaveHdrSize {
		t.Fatalf("XSAVE size %d", h.XSaveSize)
	}
	if off, size, ok := h.component(2, int(h.XSaveSize)); h.XCR0&4 != 0 && (!ok || off != 576 || size != 256) {
		t.Errorf("AVX component at %d+%d (%v), want 576+256", off, size, ok)
	}
	t.Logf("%s family %d model %d: XCR0 %#x (%s), XSAVE %d bytes", h.Vendor, h.Family, h.Model, h.XCR0, Names(h.XCR0), h.XSaveSize)
}

func TestRegsRoundTrip(t *testing.T) {
	var r unix.PtraceRegs
	for i, f := range regFields(&r, &pb.UserX86RegsEntry{}) {
		*f.reg = uint64(i+1) * 0x0101010101010101
	}
	got, err := RegsFromImage(RegsToImage(&r))
	if err != nil {
		t.Fatal(err)
	}
	if *got != r {
		t.Errorf("round trip:\n got %+v\nwant %+v", *got, r)
	}
}

// randomXState fills a standard-format XSAVE area for h with random
// registers in the components CRIU's image can carry.
func randomXState(h *Host, bv uint64) []byte {
	b := make([]byte, h.XSaveSize)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range fxsaveSize {
		b[i] = byte(rnd.Uint32())
	}
	le.PutUint64(b[swReservedOff:], h.XCR0)
	le.PutUint64(b[xstateBVOff:], bv)
	for _, ic := range imageComponents {
		if off, size, ok := h.component(ic.c, len(b)); ok && bv&(1<<ic.c) != 0 {
			for i := range size {
				b[off+i] = byte(rnd.Uint32())
			}
		}
	}
	return b
}

func TestXStateRoundTrip(t *testing.T) {
	h := ReadHost()
	b := randomXState(h, h.XCR0&ImageMask())
	e, err := h.XStateToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.XStateFromImage(e, false)
	if err != nil {
		t.Fatal(err)
	}
	// Bytes 416-511 are free for software, except the XCR0 the kernel
	// reports at 464; they are not restored.
	for _, r := range [][2]int{{0, 416}, {464, 472}, {512, len(b)}} {
		if !bytes.Equal(got[r[0]:r[1]], b[r[0]:r[1]]) {
			t.Errorf("round trip changed bytes %d-%d", r[0], r[1])
		}
	}
	e2, err := h.XStateToImage(got)
	if err != nil {
		t.Fatal(err)
	}
	e2.Padding = e.Padding
	if d := cmp.Diff(e, e2); d != "" {
		t.Errorf("image round trip (-first +second):\n%s", d)
	}
}

func TestXStateRefusesWhatImagesCannotHold(t *testing.T) {
	h := ReadHost()
	b := randomXState(h, legacyMask|1<<18)
	if _, err := h.XStateToImage(b); !errors.Is(err, ErrXState) {
		t.Fatalf("AMX tile data: err = %v, want ErrXState", err)
	}
	if _, err := h.XStateToImage(b[:100]); !errors.Is(err, ErrXState) {
		t.Fatalf("short buffer: err = %v, want ErrXState", err)
	}
}

func TestXStateMissingFeatures(t *testing.T) {
	h := ReadHost()
	if h.XCR0&(1<<5) == 0 {
		t.Skip("this CPU has no AVX-512; the test needs a component to take away")
	}
	e, err := h.XStateToImage(randomXState(h, h.XCR0&ImageMask()))
	if err != nil {
		t.Fatal(err)
	}
	// An older CPU: the same, without AVX-512.
	small := *h
	small.XCR0 &^= 0xe0
	if _, err := small.XStateFromImage(e, false); !errors.Is(err, ErrMissingFeatures) {
		t.Fatalf("err = %v, want ErrMissingFeatures", err)
	}
	b, err := small.XStateFromImage(e, true)
	if err != nil {
		t.Fatal(err)
	}
	if bv := le.Uint64(b[xstateBVOff:]); bv&0xe0 != 0 {
		t.Errorf("xstate_bv %#x keeps AVX-512 components the CPU lacks", bv)
	}
	if err := small.Check(nil, FpregsInUse(e)); !errors.Is(err, ErrMissingFeatures) {
		t.Errorf("Check = %v, want ErrMissingFeatures", err)
	}
	// The same registers at their initial state go anywhere.
	for _, w := range [][]uint64{e.Xsave.OpmaskReg, e.Xsave.ZmmUpper, e.Xsave.Hi16Zmm} {
		clear(w)
	}
	if _, err := small.XStateFromImage(e, false); err != nil {
		t.Errorf("unused AVX-512 state: %v", err)
	}
}

// TestXStatePKRU checks that a thread from a CPU without protection keys
// gets the kernel's default PKRU on one that has them.
func TestXStatePKRU(t *testing.T) {
	h := ReadHost()
	if h.XCR0&(1<<pkruComponent) == 0 {
		t.Skip("this CPU has no PKRU")
	}
	e, err := h.XStateToImage(randomXState(h, h.XCR0&ImageMask()&^(1<<pkruComponent)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.XStateFromImage(e, false)
	if err != nil {
		t.Fatal(err)
	}
	off, _, _ := h.component(pkruComponent, len(b))
	if bv, pkru := le.Uint64(b[xstateBVOff:]), le.Uint32(b[off:]); bv&(1<<pkruComponent) == 0 || pkru != pkruDefault {
		t.Errorf("xstate_bv %#x, PKRU %#x; want the PKRU bit and %#x", bv, pkru, pkruDefault)
	}
}

// TestImageChecksOnItsCPU checks that this CPU's own record and threads
// pass its check, and that the record holds CRIU's words.
func TestImageChecksOnItsCPU(t *testing.T) {
	h := ReadHost()
	e := h.Image()
	x := e.X86Entry[0]
	if x.GetCapabilityVer() != 2 || len(x.Capability) != 19 {
		t.Fatalf("capability version %d with %d words, want 2 with 19", x.GetCapabilityVer(), len(x.Capability))
	}
	a, _, c, d := cpuid(1, 0)
	if x.Capability[0] != d || x.Capability[4] != c || a == 0 {
		t.Errorf("words 0 and 4 = %#x %#x, want leaf 1 EDX %#x and ECX %#x", x.Capability[0], x.Capability[4], d, c)
	}
	if !slices.Contains(h.Caps.Usable(h.XCR0), "sse2") {
		t.Errorf("usable %v lacks sse2", h.Caps.Usable(h.XCR0))
	}
	fp, err := h.XStateToImage(randomXState(h, h.XCR0&ImageMask()))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(e, FpregsInUse(fp)); err != nil {
		t.Errorf("this CPU lacks what it offers: %v", err)
	}
	t.Logf("%s: %s", h.ModelID, strings.Join(h.Caps.Usable(h.XCR0), " "))
}
