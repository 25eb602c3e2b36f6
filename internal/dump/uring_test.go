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
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpIOUringRefused checks that a dump refuses an io_uring it
// cannot bring back exactly (test/subjects/uring.c's modes), naming the
// process, the descriptor and why, and leaves the subject running and no
// images behind.
func TestDumpIOUringRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct{ mode, want string }{
		{"inflight", "in flight armed with poll"},
		{"timeout", "requests in flight"},
		{"files", "registered files"},
		{"eventfd", "registered eventfd"},
		{"regring", "registered an io_uring descriptor at index 0"},
		{"pbuf", "provided buffers in group 7"},
		{"sqpoll", "SQPOLL thread"},
		{"single", "IORING_SETUP_SINGLE_ISSUER"},
		{"iopoll", "IORING_SETUP_IOPOLL"},
		{"sqe128", "IORING_SETUP_SQE128"},
		{"disabled", "IORING_SETUP_R_DISABLED"},
		{"unmapped", "not mapped"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			s := testutil.StartSubject(t, testutil.BuildC(t, "uring.c"), dir, tc.mode)
			s.WaitTicks(t, 1)
			fd := s.ReadyUint(t, "fd")
			images := filepath.Join(t.TempDir(), "images")
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: images})
			wants := []string{tc.want, fmt.Sprintf("fd %d", fd), fmt.Sprintf("pid %d", s.Pid)}
			if tc.mode == "regring" {
				// A thread's registration names no descriptor.
				wants[1] = fmt.Sprintf("tid %d", s.Pid)
			}
			for _, w := range wants {
				if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), w) {
					t.Fatalf("dump: %v, want %v naming %q", err, dump.ErrUnsupported, w)
				}
			}
			t.Logf("refused: %v", err)
			s.WaitTicks(t, 3)
			if _, err := os.Stat(images); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("images left behind: %v", err)
			}
		})
	}
}

// TestDumpIOUringLeaveRunning dumps the uring subject's idle ring,
// leaving it running: its probes leave the ring as it was, and the
// subject goes on writing and reading through it, its counters checked
// at every tick.
func TestDumpIOUringLeaveRunning(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "uring.c"), t.TempDir(), "idle")
	s.WaitTicks(t, 2)
	images := filepath.Join(t.TempDir(), "images")
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: images, LeaveRunning: true}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	if _, err := os.Stat(filepath.Join(images, "cryo-io-uring.img")); err != nil {
		t.Errorf("no ring record: %v", err)
	}
	s.WaitTicks(t, s.Ticks()+5)
}
