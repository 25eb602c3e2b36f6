package proc

import (
	"errors"
	"testing"
)

func TestParseOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int32
		ok   bool
	}{
		{"0\n", 0, true},
		{"400\n", 400, true},
		{"-1000\n", -1000, true},
		{"1000", 1000, true},
		{"1001\n", 0, false},
		{"-1001\n", 0, false},
		{"", 0, false},
		{" 5\n", 0, false},
		{"5\n\n", 0, false},
	} {
		got, err := ParseOOMScoreAdj([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseOOMScoreAdj(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestReadOOMScoreAdjSelf(t *testing.T) {
	if _, err := ReadOOMScoreAdj(0); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseOOMScoreAdj(f *testing.F) {
	f.Add([]byte("0\n"))
	f.Add([]byte("-1000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseOOMScoreAdj(b)
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error does not wrap ErrSyntax: %v", err)
		}
		if err == nil && (v < OOMScoreAdjMin || v > OOMScoreAdjMax) {
			t.Fatalf("ParseOOMScoreAdj(%q) = %d, out of range", b, v)
		}
	})
}
