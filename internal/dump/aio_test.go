package dump_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpAioInFlight checks that a dump refuses an AIO context with a
// request in flight that completes while the process is frozen (a poll
// of a pipe, which the test writes to once the dump copies pages),
// naming the process and the context, and leaves the process running,
// the request's event in its ring, and no images.
func TestDumpAioInFlight(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		opts dump.Options
	}{
		{"killing", dump.Options{}},
		{"leaving running, frozen", dump.Options{LeaveRunning: true, NoSnapshot: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "memstate.c"), t.TempDir(), "aiopoll")
			s.WaitTicks(t, 1)
			ctx, pipe := s.ReadyUint(t, "aiopoll"), s.ReadyUint(t, "aiopipe")
			opts := tc.opts
			opts.Pid, opts.Dir = s.Pid, filepath.Join(t.TempDir(), "images")
			var wrote error
			opts.Progress = func(done, total uint64) {
				if wrote != nil || done == 0 {
					return
				}
				wrote = os.WriteFile(proc.Path(s.Pid, fmt.Sprintf("fd/%d", pipe)), []byte("x"), 0)
				if wrote == nil {
					wrote = errors.New("written")
				}
			}
			_, err := dump.Dump(context.Background(), opts)
			if wrote == nil || wrote.Error() != "written" {
				t.Fatalf("write to the subject's pipe during the dump: %v", wrote)
			}
			want := fmt.Sprintf("AIO context %#x", ctx)
			if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", s.Pid)) {
				t.Fatalf("dump: %v, want %v naming %s and pid %d", err, dump.ErrUnsupported, want, s.Pid)
			}
			t.Logf("refused: %v", err)
			s.WaitTicks(t, 3)
			if _, err := os.Stat(opts.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("images left behind: %v", err)
			}
			// The poll's event is in the ring, for the process to reap.
			mem, err := os.Open(proc.Path(s.Pid, "mem"))
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			b := make([]byte, kernel.AioRingHeaderSize)
			if _, err := mem.ReadAt(b, int64(ctx)); err != nil {
				t.Fatal(err)
			}
			var ring kernel.AioRing
			if err := kernel.Decode(b, &ring); err != nil {
				t.Fatal(err)
			}
			if ring.Head != 0 || ring.Tail != 1 {
				t.Errorf("ring head %d tail %d after the failed dump, want the poll's event (0, 1)", ring.Head, ring.Tail)
			}
		})
	}
}
