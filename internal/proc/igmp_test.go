package proc

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseIGMP(t *testing.T) {
	got, err := ParseIGMP(readSeed(t, "igmp.txt"))
	if err != nil {
		t.Fatal(err)
	}
	allHosts := netip.MustParseAddr("224.0.0.1")
	if want := []McastGroup{{1, allHosts}, {4, allHosts}}; !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("ParseIGMP = %v, want %v", got, want)
	}
	got, err = ParseIGMP6(readSeed(t, "igmp6.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != (McastGroup{1, netip.MustParseAddr("ff02::1")}) || got[9] != (McastGroup{4, netip.MustParseAddr("ff01::1")}) {
		t.Errorf("ParseIGMP6 = %v", got)
	}
	for _, in := range []string{"h\nx\tlo : 1 V3\n", "h\n\t\t\t\t010000E0 1\n", "h\n1\tlo : 1 V3\n\t\t\t\t0100E0 1\n", "h\n1\tlo : 1 V3\n\n"} {
		if g, err := ParseIGMP([]byte(in)); err == nil {
			t.Errorf("ParseIGMP(%q) = %v, want an error", in, g)
		}
	}
	for _, in := range []string{"1 lo\n", "x lo ff020000000000000000000000000001 1\n", "1 lo ff02000000000000000000000000001 1\n", "1 lo zz020000000000000000000000000001 1\n"} {
		if g, err := ParseIGMP6([]byte(in)); err == nil {
			t.Errorf("ParseIGMP6(%q) = %v, want an error", in, g)
		}
	}
}

func FuzzParseIGMP(f *testing.F) {
	f.Add(readSeed(f, "igmp.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseIGMP(b); err != nil {
			checkFuzzErr(t, err)
		}
	})
}

func FuzzParseIGMP6(f *testing.F) {
	f.Add(readSeed(f, "igmp6.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseIGMP6(b); err != nil {
			checkFuzzErr(t, err)
		}
	})
}
