package dump_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpTargetKilled kills the target, a process of two threads, with
// SIGKILL at random moments of its dump: the dump must end, with an
// error or a complete checkpoint, never hang (the kernel reports the main
// thread's death only once its other threads are reaped).
func TestDumpTargetKilled(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "sigqueue.c")
	for i := range 30 {
		s := testutil.StartSubject(t, bin)
		done := make(chan error, 1)
		go func() {
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), LeaveRunning: true})
			done <- err
		}()
		delay := rand.N(30 * time.Millisecond)
		time.Sleep(delay)
		unix.Kill(s.Pid, unix.SIGKILL)
		select {
		case err := <-done:
			t.Logf("round %d, killed %v into the dump: %v", i, delay, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the dump still runs 10 s after its target was killed %v into it", i, delay)
		}
	}
}
