package vdso

import (
	"errors"
	"testing"
)

func TestMark(t *testing.T) {
	m := Mark{VDSO: 0x7fff1000, VVar: 0x7fff0000 - 0x6000, RuntimeVVar: 0x7ffe0000}
	b := m.Encode()
	if string(b[:8]) != "CRIUvDSO" || len(b) != MarkSize {
		t.Fatalf("encoded % x", b)
	}
	got, err := ParseMark(append(b, make([]byte, 100)...))
	if err != nil || got != m {
		t.Fatalf("ParseMark = %+v, %v; want %+v", got, err, m)
	}
	vdso := readFixture(t, "linux-6.18-amd64.so")
	if _, err := ParseMark(vdso); !errors.Is(err, ErrNoMark) {
		t.Errorf("a plain vDSO: err = %v, want ErrNoMark", err)
	}
	b[16] = 2
	if _, err := ParseMark(b); !errors.Is(err, ErrFormat) {
		t.Errorf("version 2: err = %v, want ErrFormat", err)
	}
	if _, err := ParseMark(b[:20]); !errors.Is(err, ErrNoMark) {
		t.Errorf("short: err = %v, want ErrNoMark", err)
	}
}
