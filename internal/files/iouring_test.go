package files

import (
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// TestIOUringIdle checks what fdinfo says that makes a ring refused.
func TestIOUringIdle(t *testing.T) {
	idle := proc.Uring{SqMask: 63, SqHead: 70000, SqTail: 70001, CachedSqHead: 70000, CqMask: 127, CqHead: 69998, CqTail: 70000, CachedCqTail: 70000,
		SqThread: -1, SqThreadCpu: -1, NAPI: "disabled"}
	if why := ioUringIdle(idle); why != "" {
		t.Errorf("idle ring refused: %s", why)
	}
	// Wrapped counters are idle too.
	wrapped := idle
	wrapped.SqHead, wrapped.CachedSqHead, wrapped.SqTail, wrapped.CqTail, wrapped.CachedCqTail, wrapped.CqHead = 2, 2, 2, 2, 2, 1<<32-1
	if why := ioUringIdle(wrapped); why != "" {
		t.Errorf("ring with wrapped counters refused: %s", why)
	}
	for _, tc := range []struct {
		name string
		edit func(*proc.Uring)
		want string
	}{
		{"SQPOLL", func(u *proc.Uring) { u.SqThread = 77 }, "SQPOLL thread (pid 77)"},
		{"taking SQEs", func(u *proc.Uring) { u.CachedSqHead++ }, "taking SQEs"},
		{"posting CQEs", func(u *proc.Uring) { u.CachedCqTail++ }, "posting CQEs"},
		{"poll armed", func(u *proc.Uring) { u.Polls = 1 }, "armed with poll"},
		{"overflow", func(u *proc.Uring) { u.Overflow = 2 }, "overflowed"},
		{"in flight", func(u *proc.Uring) { u.SqHead++; u.CachedSqHead++; u.SqTail++ }, "requests in flight: 70001 SQEs taken, 70000 CQEs posted"},
		{"registered files", func(u *proc.Uring) { u.UserFiles = 1 }, "registered files"},
		{"registered buffers", func(u *proc.Uring) { u.UserBufs = 3 }, "registered buffers"},
		{"NAPI", func(u *proc.Uring) { u.NAPI = "enabled" }, "NAPI"},
		{"unknown section", func(u *proc.Uring) { u.Other = []string{"Personalities"} }, "Personalities"},
	} {
		u := idle
		tc.edit(&u)
		if why := ioUringIdle(u); !strings.Contains(why, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.name, why, tc.want)
		}
	}
}

// TestIOUringLayout checks what the sizes of a ring's mappings tell of
// it, with the region sizes of Linux 6.18.
func TestIOUringLayout(t *testing.T) {
	// MariaDB's ring: 2048 SQEs, 4096 CQEs. Sizes with flags 0, SQE128,
	// CQE32, both, NO_SQARRAY, and so on (ioUringGeometries' order).
	big := ioUringGeometry{pid: 1, fd: 9,
		sizes: [][2]uint64{{0x13000, 0x20000}, {0x13000, 0x40000}, {0x23000, 0x20000}, {0x23000, 0x40000},
			{0x11000, 0x20000}, {0x11000, 0x40000}, {0x21000, 0x20000}, {0x21000, 0x40000}},
		flags: []uint32{0, 0x400, 0x800, 0xc00, 0x10000, 0x10400, 0x10800, 0x10c00}}
	// 64 SQEs, 128 CQEs: with and without an SQ array alike.
	small := ioUringGeometry{pid: 1, fd: 5,
		sizes: [][2]uint64{{0x1000, 0x1000}, {0x1000, 0x2000}, {0x2000, 0x1000}, {0x2000, 0x2000},
			{0x1000, 0x1000}, {0x1000, 0x2000}, {0x2000, 0x1000}, {0x2000, 0x2000}},
		flags: []uint32{0, 0x400, 0x800, 0xc00, 0x10000, 0x10400, 0x10800, 0x10c00}}
	// 8 SQEs, 16 CQEs: a page for everything.
	tiny := small
	tiny.sizes = [][2]uint64{{0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}, {0x1000, 0x1000}}
	m := func(pgoff, size uint64) ioUringMapping {
		return ioUringMapping{pid: 1, start: 0x7f0000000000 + pgoff>>8, end: 0x7f0000000000 + pgoff>>8 + size, pgoff: pgoff}
	}
	for _, tc := range []struct {
		name      string
		geo       ioUringGeometry
		ms        []ioUringMapping
		noSQArray bool
		why       string
		layout    int
	}{
		{"MariaDB", big, []ioUringMapping{m(0, 0x13000), m(kernel.IORingOffSQEs, 0x20000)}, false, "", 0},
		{"CQ ring mapped apart", big, []ioUringMapping{m(0, 0x13000), m(kernel.IORingOffCQRing, 0x11000), m(kernel.IORingOffSQEs, 0x20000)}, false, "", 0},
		{"not mapped", big, nil, false, "not mapped", 0},
		{"SQEs not mapped", big, []ioUringMapping{m(0, 0x13000)}, false, "cannot tell its setup flags", 0},
		{"rings in part", big, []ioUringMapping{m(0, 0x1000), m(kernel.IORingOffSQEs, 0x20000)}, false, "cannot tell its setup flags", 0},
		{"SQE128", big, []ioUringMapping{m(0, 0x13000), m(kernel.IORingOffSQEs, 0x40000)}, false, "", 1},
		{"CQE32", big, []ioUringMapping{m(0, 0x23000), m(kernel.IORingOffSQEs, 0x20000)}, false, "", 2},
		{"CQE32 without an SQ array", big, []ioUringMapping{m(0, 0x21000), m(kernel.IORingOffSQEs, 0x20000)}, false, "", 6},
		{"larger than any", big, []ioUringMapping{m(0, 0x24000), m(kernel.IORingOffSQEs, 0x20000)}, false, "past the largest region", 0},
		{"NO_SQARRAY", big, []ioUringMapping{m(0, 0x11000), m(kernel.IORingOffSQEs, 0x20000)}, false, "", 4},
		{"buffer ring", big, []ioUringMapping{m(0, 0x13000), m(kernel.IORingOffSQEs, 0x20000), m(0x80000000, 0x1000)}, false, "not one of its regions'", 0},
		{"small", small, []ioUringMapping{m(0, 0x1000), m(kernel.IORingOffSQEs, 0x1000)}, true, "", 0},
		{"tiny", tiny, []ioUringMapping{m(0, 0x1000), m(kernel.IORingOffSQEs, 0x1000)}, false, "cannot tell its setup flags", 0},
	} {
		layout, noSQArray, why := ioUringLayout(tc.ms, tc.geo)
		if layout != tc.layout || noSQArray != tc.noSQArray || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %d, %v, %q; want %d, %v, %q", tc.name, layout, noSQArray, why, tc.layout, tc.noSQArray, tc.why)
		}
	}
}

// TestIOUringGeometries checks the region sizes this kernel gives the
// rings it makes, against MariaDB's ring as measured (2048 SQEs, 4096
// CQEs: 0x13000 bytes of rings, 0x20000 of SQEs).
func TestIOUringGeometries(t *testing.T) {
	g, p, err := ioUringGeometries(2048, 4096, 0)
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	if g.sizes[0] != [2]uint64{0x13000, 0x20000} || g.flags[0] != 0 {
		t.Errorf("flags %#x: sizes %#x, want 0x13000 and 0x20000", g.flags[0], g.sizes[0])
	}
	if rings, sqes := ioUringSizes(p); pageUp(rings) != 0x13000 || sqes != 0x20000 {
		t.Errorf("sizes %#x, %#x", rings, sqes)
	}
	for i, f := range g.flags {
		if i > 0 && g.sizes[i] == g.sizes[0] {
			t.Errorf("flags %#x: the same sizes as without them, %#x", f, g.sizes[i])
		}
	}
	// A ring of 32 CQEs takes IORING_SETUP_CQSIZE.
	if g, _, err := ioUringGeometries(8, 32, kernel.IORingSetupCQSize); err != nil || g.flags[0] != kernel.IORingSetupCQSize {
		t.Errorf("8 SQEs, 32 CQEs: %+v, %v", g, err)
	}
}
