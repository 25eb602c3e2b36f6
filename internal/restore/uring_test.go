package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreIOUring checkpoints and restores test/subjects/uring.c
// holding an idle io_uring, and checks the images (an EXT entry, the
// ring's record, VMAs of the ring's status) and that the restored
// subject goes on using its ring: every tick it writes and reads a pipe
// through it, its thread blocked in io_uring_enter reaping, and checks
// the ring's counters against its own copies; with CQEs not reaped and
// an SQE not submitted at the dump, it checks they are there at every
// tick, then reaps them and submits the SQE. The restored ring is dumped
// and restored again.
func TestRestoreIOUring(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode           string
		sq, cq, flags  uint32
		sqHead, sqTail uint32
		cqHead, cqTail uint32
		exactCounters  bool
	}{
		{mode: "idle", sq: 64, cq: 128, sqHead: 70000},
		{mode: "big", sq: 64, cq: 128, flags: 1<<10 | 1<<11, sqHead: 5000},
		{mode: "nosqarray", sq: 1024, cq: 2048, flags: 1 << 16, sqHead: 5000},
		{mode: "pending", sq: 64, cq: 256, flags: 1 << 3, sqHead: 1002, sqTail: 1003, cqHead: 1000, cqTail: 1002, exactCounters: true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "uring.c"), dir, tc.mode), dir: dir}
			fd := int(s.ReadyUint(t, "fd"))
			s.WaitTicks(t, 3)
			c := dumpAndReap(t, s)

			f := dumpedFiles(t, c)[fd]
			if f.GetType() != pb.FdTypes_EXT || f.GetExt().GetId() != f.GetId() {
				t.Fatalf("fd %d dumped as %v, want an EXT entry", fd, f)
			}
			rings, err := c.im.dir.ReadIOUrings()
			if err != nil {
				t.Fatal(err)
			}
			if len(rings) != 1 || rings[0].ID != f.GetId() {
				t.Fatalf("%s: %d records, want one of file %d", image.IOUrings.FileName(0), len(rings), f.GetId())
			}
			u := rings[0]
			if u.SqEntries != tc.sq || u.CqEntries != tc.cq || u.Flags != tc.flags {
				t.Errorf("ring of %d SQEs, %d CQEs, flags %#x; want %d, %d, %#x", u.SqEntries, u.CqEntries, u.Flags, tc.sq, tc.cq, tc.flags)
			}
			if tc.exactCounters {
				if u.SqHead != tc.sqHead || u.SqTail != tc.sqTail || u.CqHead != tc.cqHead || u.CqTail != tc.cqTail {
					t.Errorf("counters SQ %d-%d, CQ %d-%d; want SQ %d-%d, CQ %d-%d", u.SqHead, u.SqTail, u.CqHead, u.CqTail, tc.sqHead, tc.sqTail, tc.cqHead, tc.cqTail)
				}
			} else if u.SqHead < tc.sqHead || u.SqHead != u.SqTail || u.CqHead != u.CqTail || u.SqHead != u.CqTail {
				t.Errorf("counters SQ %d-%d, CQ %d-%d; want an idle ring past %d", u.SqHead, u.SqTail, u.CqHead, u.CqTail, tc.sqHead)
			}
			for key, pgoff := range map[string]uint64{"rings": 0, "sqes": 0x10000000} {
				v := vmaAt(t, c.im, s.ReadyUint(t, key))
				if v.GetStatus() != image.VMAAreaIOUring || uint32(v.GetShmid()) != f.GetId() || v.GetPgoff() != pgoff {
					t.Errorf("%s VMA %#x-%#x: status %#x, file %d, offset %#x; want %#x, %d, %#x", key, v.GetStart(), v.GetEnd(), v.GetStatus(), v.GetShmid(), v.GetPgoff(), image.VMAAreaIOUring, f.GetId(), pgoff)
				}
			}

			if tc.mode == "idle" {
				refuseIOUringImages(t, c, u)
			}

			_, log := restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, c.ticks+5)
			info, err := proc.ReadFdinfo(s.Pid, fd)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := info.IOUring(); err != nil {
				t.Errorf("restored fd %d: %v", fd, err)
			}
			if tc.mode == "pending" {
				if err := os.WriteFile(filepath.Join(dir, "uring.go"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				s.WaitLine(t, "uring drained")
				s.WaitTicks(t, s.Ticks()+5)
			}
			t.Logf("restore log:\n%s", log)

			// The restored ring, dumped and restored again.
			c = dumpAndReap(t, s)
			restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, c.ticks+5)
		})
	}
}

// refuseIOUringImages checks that a restore refuses, naming why, a
// checkpoint whose ring another kernel laid out (its offsets differ from
// this kernel's), or whose ring's record is missing; and leaves the pid
// free for the next.
func refuseIOUringImages(t *testing.T, c *checkpoint, u image.IOUring) {
	t.Helper()
	other := copyDir(t, c.dir)
	moved := u
	moved.SqOff[image.SqOffFlags] += 4
	d, err := image.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(other, image.IOUrings.FileName(0))); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteIOUrings([]image.IOUring{moved}); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(context.Background(), restore.Options{Dir: other}); !errors.Is(err, restore.ErrUnsupported) ||
		!strings.Contains(err.Error(), "lays the rings out otherwise") {
		t.Fatalf("restore of a ring laid out otherwise: %v, want ErrUnsupported saying so", err)
	}
	missing := copyDir(t, c.dir)
	if err := os.Remove(filepath.Join(missing, image.IOUrings.FileName(0))); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Restore(context.Background(), restore.Options{Dir: missing}); !errors.Is(err, restore.ErrUnsupported) ||
		!strings.Contains(err.Error(), "not an io_uring") {
		t.Fatalf("restore without %s: %v, want ErrUnsupported naming the EXT entry", image.IOUrings.FileName(0), err)
	}
}
