package restore

import (
	"bytes"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
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
	anon := uint32(image.VMAAreaRegular | image.VMAAnonPrivate)
	v := func(start, end uint64, prot, flags, status uint32) *vma.VmaEntry {
		return &vma.VmaEntry{Start: proto.Uint64(start), End: proto.Uint64(end), Prot: proto.Uint32(prot),
			Flags: proto.Uint32(flags), Status: proto.Uint32(status)}
	}
	rw, priv := uint32(unix.PROT_READ|unix.PROT_WRITE), uint32(unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	parent := v(0x1000, 0x9000, rw, priv, anon)
	r := &restorer{}
	tests := []struct {
		name  string
		child *vma.VmaEntry
		want  bool
	}{
		{"same", v(0x1000, 0x9000, rw, priv, anon), true},
		{"inside", v(0x2000, 0x3000, rw, priv, anon), true},
		{"read-only after the fork", v(0x2000, 0x3000, unix.PROT_READ, priv, anon), true},
		{"locked", v(0x2000, 0x3000, rw, priv|unix.MAP_LOCKED, anon), true},
		{"executable", v(0x2000, 0x3000, rw|unix.PROT_EXEC, priv, anon), false},
		{"past the end", v(0x8000, 0xa000, rw, priv, anon), false},
		{"grows down", v(0x2000, 0x3000, rw, priv|unix.MAP_GROWSDOWN, anon), false},
		{"heap", v(0x2000, 0x3000, rw, priv, anon|image.VMAAreaHeap), false},
		{"shared", v(0x2000, 0x3000, rw, unix.MAP_SHARED|unix.MAP_ANONYMOUS, image.VMAAreaRegular|image.VMAAnonShared), false},
		{"file", v(0x2000, 0x3000, rw, unix.MAP_PRIVATE, image.VMAAreaRegular|image.VMAFilePrivate), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inherits(tt.child, parent, r.writableProt); got != tt.want {
				t.Errorf("inherits = %v, want %v", got, tt.want)
			}
		})
	}
}
