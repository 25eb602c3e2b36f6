package proc

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// AT_* types used here (include/uapi/linux/auxvec.h).
const (
	atPagesz      = 6
	atSysinfoEhdr = 33
)

func auxvBytes(words ...uint64) []byte {
	var b []byte
	for _, w := range words {
		b = binary.NativeEndian.AppendUint64(b, w)
	}
	return b
}

func TestParseAuxv(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want Auxv
	}{
		{auxvBytes(0, 0), Auxv{}},
		{auxvBytes(6, 4096, 33, 0x7fff0000, 6, 1, 0, 0), Auxv{{6, 4096}, {33, 0x7fff0000}, {6, 1}}},
	} {
		got, err := ParseAuxv(tc.in)
		if err != nil {
			t.Errorf("ParseAuxv(%x): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseAuxv(%x): (-want +got):\n%s", tc.in, d)
		}
		if v, ok := got.Lookup(6); len(tc.want) > 0 && (v != 4096 || !ok) {
			t.Errorf("Lookup(6) = %d, %v; want the first, 4096", v, ok)
		}
		if v, ok := got.Lookup(7); ok {
			t.Errorf("Lookup(7) = %d, %v; want none", v, ok)
		}
	}
	a, err := ParseAuxv(readSeed(t, "auxv-sleep.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 22 || a[0] != (AuxEntry{atSysinfoEhdr, 140122121265152}) || a[21] != (AuxEntry{28, 32}) {
		t.Errorf("capture of sleep: %v", a)
	}
}

func TestParseAuxvErrors(t *testing.T) {
	for _, in := range [][]byte{
		nil,
		auxvBytes(0),
		auxvBytes(6, 4096),
		auxvBytes(6, 4096, 0),
		auxvBytes(6, 4096, 0, 0)[:31],
		auxvBytes(0, 0, 6, 4096, 0, 0),
		auxvBytes(0, 0, 0, 0),
	} {
		if a, err := ParseAuxv(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseAuxv(%x) = %v, %v; want ErrSyntax", in, a, err)
		}
	}
}

// TestReadAuxvSelf checks the page size, and that AT_SYSINFO_EHDR is the
// [vdso] mapping.
func TestReadAuxvSelf(t *testing.T) {
	a, err := ReadAuxv(0)
	if err != nil {
		t.Fatal(err)
	}
	if ps, ok := a.Lookup(atPagesz); !ok || ps != uint64(os.Getpagesize()) {
		t.Errorf("AT_PAGESZ = %d, %v", ps, ok)
	}
	maps, err := ReadMaps(0)
	if err != nil {
		t.Fatal(err)
	}
	vdso, _ := a.Lookup(atSysinfoEhdr)
	for _, m := range maps {
		if m.Path == "[vdso]" && m.Start != vdso {
			t.Errorf("[vdso] at %#x, AT_SYSINFO_EHDR %#x", m.Start, vdso)
		}
	}
}

func FuzzParseAuxv(f *testing.F) {
	f.Add(readSeed(f, "auxv-sleep.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAuxv(b)
		if checkFuzzErr(t, err) {
			return
		}
		// What parses is the entries and a zero AT_NULL type.
		var words []uint64
		for _, e := range a {
			words = append(words, e.Type, e.Value)
		}
		words = append(words, 0, binary.NativeEndian.Uint64(b[len(b)-8:]))
		if d := cmp.Diff(b, auxvBytes(words...)); d != "" {
			t.Fatalf("does not round-trip: %s", d)
		}
	})
}
