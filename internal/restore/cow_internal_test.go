package restore

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

func TestSplit(t *testing.T) {
	r := func(s, e uint64) vdso.Range { return vdso.Range{Start: s, End: e} }
	by := []vdso.Range{r(10, 20), r(30, 40), r(40, 45), r(60, 70)}
	tests := []struct {
		name    string
		a       vdso.Range
		by      []vdso.Range
		in, out []vdso.Range
	}{
		{"none", r(0, 100), nil, nil, []vdso.Range{r(0, 100)}},
		{"before all", r(0, 10), by, nil, []vdso.Range{r(0, 10)}},
		{"after all", r(70, 80), by, nil, []vdso.Range{r(70, 80)}},
		{"inside one", r(12, 18), by, []vdso.Range{r(12, 18)}, nil},
		{"across", r(15, 65), by, []vdso.Range{r(15, 20), r(30, 40), r(40, 45), r(60, 65)}, []vdso.Range{r(20, 30), r(45, 60)}},
		{"all", r(0, 100), by, by, []vdso.Range{r(0, 10), r(20, 30), r(45, 60), r(70, 100)}},
		{"empty range in by", r(0, 10), []vdso.Range{r(0, 0), r(5, 6)}, []vdso.Range{r(5, 6)}, []vdso.Range{r(0, 5), r(6, 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, out := split(tt.a, tt.by)
			if d := cmp.Diff(tt.in, in); d != "" {
				t.Errorf("in (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.out, out); d != "" {
				t.Errorf("out (-want +got):\n%s", d)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	const addr = 0x10000
	have := bytes.Repeat([]byte{1}, 5*pageSize)
	want := bytes.Clone(have)
	for _, page := range []int{1, 2, 4} {
		want[page*pageSize+7] = 2
	}
	got := changed(addr, have, want)
	wantSegs := []ptrace.Segment{
		{Addr: addr + pageSize, Data: want[pageSize : 3*pageSize]},
		{Addr: addr + 4*pageSize, Data: want[4*pageSize:]},
	}
	if d := cmp.Diff(wantSegs, got); d != "" {
		t.Errorf("changed (-want +got):\n%s", d)
	}
	if got := changed(addr, have, have); len(got) != 0 {
		t.Errorf("changed of equal pages = %v, want none", got)
	}
}

func TestInherits(t *testing.T) {
	anon, file := uint32(image.VMAAreaRegular|image.VMAAnonPrivate), uint32(image.VMAAreaRegular|image.VMAFilePrivate)
	v := func(start, end uint64, prot, flags, status uint32) *pb.VmaEntry {
		return &pb.VmaEntry{Start: start, End: end, Prot: prot,
			Flags: flags, Status: status, Shmid: 0, Pgoff: 0}
	}
	// f maps file id at offset pgoff.
	f := func(start, end, id, pgoff uint64) *pb.VmaEntry {
		e := v(start, end, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE, file)
		e.Shmid, e.Pgoff = id, pgoff
		return e
	}
	rw, priv := uint32(unix.PROT_READ|unix.PROT_WRITE), uint32(unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	anonParent, fileParent := v(0x1000, 0x9000, rw, priv, anon), f(0x1000, 0x9000, 7, 0x10000)
	// The child has pages to write at 0x2000, none at 0x4000.
	child := &restorer{c: &checkpoint{filledReadOnly: map[uint64]bool{0x2000: true}}}
	parent := &restorer{c: &checkpoint{}}
	tests := []struct {
		name          string
		child, parent *pb.VmaEntry
		want          bool
	}{
		{"same", v(0x1000, 0x9000, rw, priv, anon), anonParent, true},
		{"inside", v(0x2000, 0x3000, rw, priv, anon), anonParent, true},
		{"read-only after the fork", v(0x2000, 0x3000, unix.PROT_READ, priv, anon), anonParent, true},
		// Made as it is, not writable: nothing to keep.
		{"read-only and empty", v(0x4000, 0x5000, unix.PROT_READ, priv, anon), anonParent, false},
		{"locked", v(0x2000, 0x3000, rw, priv|unix.MAP_LOCKED, anon), anonParent, true},
		{"executable", v(0x2000, 0x3000, rw|unix.PROT_EXEC, priv, anon), anonParent, false},
		{"past the end", v(0x8000, 0xa000, rw, priv, anon), anonParent, false},
		{"grows down", v(0x2000, 0x3000, rw, priv|unix.MAP_GROWSDOWN, anon), anonParent, false},
		{"heap", v(0x2000, 0x3000, rw, priv, anon|image.VMAAreaHeap), anonParent, false},
		{"shared", v(0x2000, 0x3000, rw, unix.MAP_SHARED|unix.MAP_ANONYMOUS, image.VMAAreaRegular|image.VMAAnonShared), anonParent, false},
		{"file in anonymous memory", f(0x2000, 0x3000, 7, 0x11000), anonParent, false},
		{"the same file", f(0x1000, 0x9000, 7, 0x10000), fileParent, true},
		{"the same file, inside", f(0x2000, 0x3000, 7, 0x11000), fileParent, true},
		{"another file", f(0x2000, 0x3000, 8, 0x11000), fileParent, false},
		{"another offset", f(0x2000, 0x3000, 7, 0x12000), fileParent, false},
		{"anonymous in a file mapping", v(0x2000, 0x3000, rw, priv, anon), fileParent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := vmaOf(tt.child), vmaOf(tt.parent)
			if got := inherits(&c, &p, child.writableProt, parent.writableProt); got != tt.want {
				t.Errorf("inherits = %v, want %v", got, tt.want)
			}
		})
	}
}
