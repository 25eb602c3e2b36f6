package restore

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVMAList checks the packed VMAs come back as added, out of order and
// overlapping too (checkVMAs refuses those after the load), and that a
// reader finds the VMAs that hold ascending addresses.
func TestVMAList(t *testing.T) {
	want := []vma{
		{start: 0x1000, end: 0x3000, prot: 3, flags: 0x22, status: 0x201},
		{start: 0x3000, end: 0x4000, pgoff: 0x7000, shmid: 9, prot: 1, flags: 2, status: 0x41},
		{start: 0x7f0000000000, end: 0x7f0000001000, madv: 1 << 63, shmid: math.MaxUint64, pgoff: math.MaxUint64, readOnly: true,
			prot: math.MaxUint32, flags: math.MaxUint32, status: math.MaxUint32},
		{start: 0x2000, end: 0x1000}, // before the one before, and empty
		{start: 0x10000, end: 0x12000},
	}
	var l vmaList
	for i := range want {
		l.add(&want[i])
	}
	var got []vma
	for v := range l.all() {
		got = append(got, *v)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(vma{})); diff != "" {
		t.Errorf("all (-want +got):\n%s", diff)
	}
	for v := range l.all() {
		if v.start != want[0].start {
			t.Errorf("all went on after a break, at %#x", v.start)
		}
		break
	}

	sorted := []vma{want[0], want[1], want[4], want[2]}
	l = vmaList{}
	for i := range sorted {
		l.add(&sorted[i])
	}
	d := l.reader()
	for _, tc := range []struct {
		addr uint64
		want int // index in sorted, -1 for none
	}{
		{0x0, -1}, {0x1000, 0}, {0x2fff, 0}, {0x3000, 1}, {0x4000, -1}, {0x11000, 2}, {0x7f0000000000, 3},
	} {
		v := d.at(tc.addr)
		switch {
		case tc.want < 0 && v != nil:
			t.Errorf("at(%#x) = %#x-%#x, want none", tc.addr, v.start, v.end)
		case tc.want >= 0 && (v == nil || *v != sorted[tc.want]):
			t.Errorf("at(%#x) = %+v, want %+v", tc.addr, v, sorted[tc.want])
		}
	}
	if d.seek(0x7f0000001000) {
		t.Errorf("seek past the last VMA found %#x-%#x", d.v.start, d.v.end)
	}

	// Enough for several chunks.
	l = vmaList{}
	var many []vma
	for i := range uint64(30000) {
		v := vma{start: 0x10000 + 3*i*pageSize, end: 0x10000 + (3*i+1+i%2)*pageSize, pgoff: i << 20, shmid: i % 7, madv: i % 3, prot: uint32(i % 8)}
		many = append(many, v)
		l.add(&v)
	}
	if len(l.packed.Chunks()) < 2 {
		t.Fatalf("%d VMAs in %d chunk", len(many), len(l.packed.Chunks()))
	}
	got = got[:0]
	for v := range l.all() {
		got = append(got, *v)
	}
	if diff := cmp.Diff(many, got, cmp.AllowUnexported(vma{})); diff != "" {
		t.Errorf("all of %d chunks (-want +got):\n%s", len(l.packed.Chunks()), diff)
	}
}
