package restore_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreSettings restores a process that changed its own settings
// (scheduling policy, speculation control, a thread's name and nice
// value): the state oracle of restoreSubject finds each of them back.
func TestRestoreSettings(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "settings.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, c.ticks+3)
}

// TestDumpRefusesThreadSettings dumps a process one of whose threads set
// its timer slack, or runs under SCHED_DEADLINE, which CRIU's images
// cannot hold: the dump refuses, naming it, and the process goes on.
func TestDumpRefusesThreadSettings(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct{ mode, want string }{
		{"slack", "timer slack of 2000000 ns"},
		{"deadline", "runs under SCHED_DEADLINE"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "settings.c"), tc.mode)
			s.WaitTicks(t, 3)
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images")})
			if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("dump: %v, want a refusal saying %q", err, tc.want)
			}
			s.WaitTicks(t, s.Ticks()+3)
		})
	}
}
