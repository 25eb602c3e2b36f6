package image

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
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

// FuzzIOUringRecord checks that a cryo.io_uring_entry record either
// fails ioUringOf's checks with ErrRecord or makes a ring whose regions
// hold every offset it names.
func FuzzIOUringRecord(f *testing.F) {
	b, err := pb.Marshal(sampleIOUring().message())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.IoUringEntry
		if err := pb.Unmarshal(b, &m); err != nil {
			return
		}
		u, err := ioUringOf(&m)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		for _, off := range append(u.SqOff[:SqOffArray:SqOffArray], u.CqOff[:CqOffCqes]...) {
			if uint64(off)+4 > uint64(len(u.Rings)) {
				t.Fatalf("offset %d past %d bytes of rings", off, len(u.Rings))
			}
		}
		if uint64(u.CqOff[CqOffCqes])+u.CQESize()*uint64(u.CqEntries) > uint64(len(u.Rings)) || uint64(len(u.SQEs)) != u.SQESize()*uint64(u.SqEntries) {
			t.Fatalf("regions too short: %d SQEs, %d CQEs in %d and %d bytes", u.SqEntries, u.CqEntries, len(u.SQEs), len(u.Rings))
		}
	})
}
