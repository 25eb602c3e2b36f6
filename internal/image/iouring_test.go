package image

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

func TestIOUringRoundTrip(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	want := []IOUring{sampleIOUring()}
	if err := d.WriteIOUrings(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.ReadIOUrings()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read %+v, want %+v", got, want)
	}
}

func TestIOUringRecordErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*IOUring)
	}{
		{"SQ entries not a power of two", func(u *IOUring) { u.SqEntries = 3 }},
		{"no SQ entries", func(u *IOUring) { u.SqEntries = 0 }},
		{"CQ smaller than SQ", func(u *IOUring) { u.CqEntries = 1 }},
		{"CQ too large", func(u *IOUring) { u.CqEntries = 1 << 17 }},
		{"SQ tail a ring ahead", func(u *IOUring) { u.SqTail = u.SqHead + 3 }},
		{"CQ head past tail", func(u *IOUring) { u.CqHead = u.CqTail + 1 }},
		{"SQEs short", func(u *IOUring) { u.SQEs = u.SQEs[:64] }},
		{"offset outside", func(u *IOUring) { u.SqOff[SqOffTail] = 200 }},
		{"unaligned offset", func(u *IOUring) { u.CqOff[CqOffHead] = 9 }},
		{"array past the rings", func(u *IOUring) { u.SqOff[SqOffArray] = 132 }},
		{"CQEs past the rings", func(u *IOUring) { u.CqOff[CqOffCqes] = 80 }},
	} {
		u := sampleIOUring()
		tc.edit(&u)
		m := u.message()
		if _, err := ioUringOf(m); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: %v, want ErrRecord", tc.name, err)
		}
	}
	m := sampleIOUring().message()
	m.SqOff = m.SqOff[:6]
	if _, err := ioUringOf(m); !errors.Is(err, ErrRecord) {
		t.Errorf("6 SQ offsets: %v, want ErrRecord", err)
	}
}
