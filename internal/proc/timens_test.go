package proc

import (
	"errors"
	"testing"
)

func TestParseTimensOffsets(t *testing.T) {
	tests := []struct {
		in   string
		want TimensOffsets
		ok   bool
	}{
		{"monotonic           0         0\nboottime            0         0\n", TimensOffsets{}, true},
		{"monotonic -14 398586482\nboottime 1000 5\n", TimensOffsets{-14e9 + 398586482, 1000e9 + 5}, true},
		{"boottime 1 0\nmonotonic 2 0\n", TimensOffsets{2e9, 1e9}, true},
		{"monotonic 1 0\n", TimensOffsets{}, false},
		{"monotonic 1 0\nboottime 1\n", TimensOffsets{}, false},
		{"monotonic 1 1000000000\nboottime 1 0\n", TimensOffsets{}, false},
		{"monotonic x 0\nboottime 1 0\n", TimensOffsets{}, false},
		{"monotonic 1 0\nmonotonic 1 0\nboottime 1 0\n", TimensOffsets{}, false},
		{"", TimensOffsets{}, false},
	}
	for _, tt := range tests {
		got, err := ParseTimensOffsets([]byte(tt.in))
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrSyntax)) || (tt.ok && got != tt.want) {
			t.Errorf("ParseTimensOffsets(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestReadTimensOffsetsSelf(t *testing.T) {
	if _, err := ReadTimensOffsets(0); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseTimensOffsets(f *testing.F) {
	f.Add([]byte("monotonic           0         0\nboottime            0         0\n"))
	f.Add([]byte("monotonic -14 398586482\nboottime 1000 5\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseTimensOffsets(b); err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error does not wrap ErrSyntax: %v", err)
		}
	})
}
