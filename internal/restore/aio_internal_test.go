package restore

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// TestCheckAios checks that the AIO contexts of an mm image are checked
// against their rings' VMAs before anything is built.
func TestCheckAios(t *testing.T) {
	const ring = 0x7f0000010000
	ringVMA := vma{start: ring, end: ring + pageSize, prot: unix.PROT_READ | unix.PROT_WRITE, flags: unix.MAP_SHARED, status: image.VMAAreaAIORing}
	anon := vma{start: 0x7f0000000000, end: 0x7f0000004000, prot: unix.PROT_READ | unix.PROT_WRITE, flags: unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, status: image.VMAAreaRegular | image.VMAAnonPrivate}
	entry := func(id uint64, nr, length uint32) *pb.AioRingEntry {
		return &pb.AioRingEntry{Id: id, NrReq: nr, RingLen: length}
	}
	for _, tc := range []struct {
		name   string
		vmas   []vma
		aios   []*pb.AioRingEntry
		saying string // "" for none
	}{
		{"a ring", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(ring, 62, pageSize)}, ""},
		{"no rings", []vma{anon}, nil, ""},
		{"a context without its ring", []vma{anon}, []*pb.AioRingEntry{entry(ring, 62, pageSize)}, "no ring VMA"},
		{"a context inside a VMA", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(anon.start+pageSize, 62, pageSize)}, "no ring VMA"},
		{"a context on an anonymous VMA", []vma{anon}, []*pb.AioRingEntry{entry(anon.start, 62, pageSize)}, "no ring VMA"},
		{"a ring longer than its VMA", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(ring, 62, 2*pageSize)}, "a ring of 8192 bytes in a VMA of 4096"},
		{"no requests", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(ring, 0, pageSize)}, "asks for 0 requests"},
		{"more requests than the ring holds", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(ring, 63, pageSize)}, "asks for 63 requests"},
		{"a context twice", []vma{anon, ringVMA}, []*pb.AioRingEntry{entry(ring, 62, pageSize), entry(ring, 62, pageSize)}, "listed twice"},
		{"a ring without its context", []vma{anon, ringVMA}, nil, "1 AIO ring VMAs for 0 AIO contexts"},
		{"a ring of another status too", []vma{anon, func() vma { v := ringVMA; v.status |= image.VMAAreaRegular; return v }()},
			[]*pb.AioRingEntry{entry(ring, 62, pageSize)}, "status 0x2001"},
		{"a private ring", []vma{anon, func() vma { v := ringVMA; v.flags = unix.MAP_PRIVATE; return v }()},
			[]*pb.AioRingEntry{entry(ring, 62, pageSize)}, "flags 0x2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &checkpoint{pid: 42, mm: &pb.MmEntry{Aios: tc.aios}}
			for _, v := range tc.vmas {
				c.vmas.add(&v)
			}
			err := c.checkAios()
			switch {
			case tc.saying == "" && err != nil:
				t.Fatalf("checkAios: %v", err)
			case tc.saying != "" && (!errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tc.saying)):
				t.Fatalf("checkAios: %v, want %v saying %q", err, ErrImage, tc.saying)
			}
		})
	}
}
