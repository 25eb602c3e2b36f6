package proc

import (
	"errors"
	"io/fs"
	"testing"
)

func TestParseLoginUID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"4294967295", LoginUIDUnset, true},
		{"1000", 1000, true},
		{"0\n", 0, true},
		{"4294967296", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{" 5", 0, false},
	} {
		got, err := ParseLoginUID([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLoginUID(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestReadLoginUIDSelf(t *testing.T) {
	if _, err := ReadLoginUID(0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

func FuzzParseLoginUID(f *testing.F) {
	f.Add([]byte("4294967295"))
	f.Add([]byte("1000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseLoginUID(b); err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error does not wrap ErrSyntax: %v", err)
		}
	})
}
