package vdso

import (
	"errors"
	"testing"
)

func TestFindHole(t *testing.T) {
	const lo, hi = 0x10000, 0x7ffffffff000
	tests := []struct {
		name    string
		used    []Range
		size    uint64
		near    uint64
		want    uint64
		wantErr error
	}{
		{"empty space, at near", nil, 0x8000, 0x7f0000000000, 0x7f0000000000, nil},
		{"near is unaligned", nil, 0x8000, 0x7f0000000123, 0x7f0000000000, nil},
		{"just below a mapping", []Range{{0x7f0000000000, 0x7f0000010000}}, 0x8000, 0x7f0000000000, 0x7effffff8000, nil},
		{"just above when closer", []Range{{0x7f0000000000, 0x7f0000010000}}, 0x8000, 0x7f000000f000, 0x7f0000010000, nil},
		{"gap too small is skipped", []Range{{0x100000, 0x200000}, {0x203000, 0x300000}}, 0x8000, 0x201000, 0x300000, nil},
		{"exact fit", []Range{{0x100000, 0x200000}, {0x208000, 0x300000}}, 0x8000, 0x250000, 0x200000, nil},
		{"overlapping used ranges", []Range{{0x100000, 0x300000}, {0x200000, 0x250000}}, 0x1000, 0x240000, 0x300000, nil},
		{"not below lo", []Range{{0x14000, 0x7ffffffff000}}, 0x8000, 0x0, 0x0, ErrNoHole},
		{"respects lo", []Range{{0x30000, 0x7ffffffff000}}, 0x8000, 0x0, 0x10000, nil},
		{"respects hi", []Range{{lo, 0x7fffffff0000}}, 0x10000, hi, 0x7ffffffef000 - 0xf000, ErrNoHole},
		{"size rounds up to pages", []Range{{0x100000, 0x200000}, {0x200800, 0x300000}}, 0x800, 0x200000, 0x300000, nil},
		{"full", []Range{{0, 1 << 48}}, 0x1000, 0x1000, 0, ErrNoHole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindHole(tt.used, tt.size, tt.near, lo, hi)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FindHole = %#x, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FindHole = %#x, %v; want %#x", got, err, tt.want)
			}
			for _, r := range tt.used {
				if got < r.End && r.Start < got+alignUp(tt.size) {
					t.Errorf("hole [%#x, +%#x) overlaps used %#x-%#x", got, tt.size, r.Start, r.End)
				}
			}
		})
	}
}
