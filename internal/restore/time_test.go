package restore_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreMonotonic checks that CLOCK_MONOTONIC never goes back across a
// restore. By default the process gets a time namespace in which its
// clocks continue from the dump: the time it spent dumped does not show.
// With NoTimens it sees this host's clocks, which jump by that time.
func TestRestoreMonotonic(t *testing.T) {
	testutil.RequireRoot(t)
	// How long the process stays dumped: far longer than a dump and a
	// restore take, even on a loaded machine.
	const down = 3 * time.Second
	for _, tt := range []struct {
		name     string
		noTimens bool
	}{{"time namespace", false}, {"no time namespace", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := kind(t, "vdsoclock").start(t)
			s.WaitTicks(t, 3)
			c := dumpAndReap(t, s)
			time.Sleep(down)
			restoreSubject(t, s, c, restore.Options{NoTimens: tt.noTimens})
			s.WaitTicks(t, 5)

			mono := func(tk testutil.Tick) int64 {
				t.Helper()
				v, err := strconv.ParseInt(tk.Fields["mono_ns"], 10, 64)
				if err != nil {
					t.Fatalf("tick %d: mono_ns=%q", tk.N, tk.Fields["mono_ns"])
				}
				return v
			}
			ticks := s.TickLines()
			last, first := mono(c.lastTick), mono(ticks[c.ticks])
			jump := time.Duration(first - last)
			t.Logf("monotonic clock: %d before the dump, %d after the restore (%v later)", last, first, jump)
			if jump < 0 {
				t.Errorf("the monotonic clock went back by %v across the restore", -jump)
			}
			offsets := timensOffsets(t, s.Pid)
			if tt.noTimens {
				if offsets["monotonic"] != 0 || offsets["boottime"] != 0 {
					t.Errorf("with NoTimens, timens_offsets are %v, want zero", offsets)
				}
				if jump < down {
					t.Errorf("with NoTimens, the monotonic clock moved %v while the process was dumped for %v", jump, down)
				}
				return
			}
			if offsets["monotonic"] == 0 || offsets["boottime"] == 0 {
				t.Errorf("timens_offsets are %v, want non-zero", offsets)
			}
			if jump >= down {
				t.Errorf("in its time namespace, the monotonic clock moved %v while the process was dumped for %v", jump, down)
			}
		})
	}
}
