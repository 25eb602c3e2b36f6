package proc

import (
	"errors"
	"testing"
)

func TestParseCoredumpFilter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"00000033\n", 0x33, true},
		{"000001ff\n", 0x1ff, true},
		{"0\n", 0, true},
		{"00000200\n", 0, false},
		{"", 0, false},
		{"0x33\n", 0, false},
		{"33\n\n", 0, false},
	} {
		got, err := ParseCoredumpFilter([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCoredumpFilter(%q) = %#x, %v; want %#x, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestReadCoredumpFilterSelf(t *testing.T) {
	if _, err := ReadCoredumpFilter(0); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseCoredumpFilter(f *testing.F) {
	f.Add([]byte("00000033\n"))
	f.Add([]byte("000001ff\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseCoredumpFilter(b)
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error does not wrap ErrSyntax: %v", err)
		}
		if err == nil && v > CoredumpFilterMax {
			t.Fatalf("ParseCoredumpFilter(%q) = %#x, out of range", b, v)
		}
	})
}
