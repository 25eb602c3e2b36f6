package restore_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// flipRounds is how many corrupted copies of one checkpoint are restored.
const flipRounds = 400

// TestRestoreFlippedBytes restores copies of a real checkpoint, each with
// one byte of one image changed at random: every restore must end, with
// an error or a process, without a panic, and leave nothing running but
// a process it reported.
func TestRestoreFlippedBytes(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	c := dumpAndReap(t, s)
	names, err := filepath.Glob(filepath.Join(c.dir, "*.img"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no images in %s: %v", c.dir, err)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d, %d images", seed, len(names))
	var restored int
	for i := range flipRounds {
		dir := copyDir(t, c.dir)
		name := filepath.Join(dir, filepath.Base(names[rng.IntN(len(names))]))
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			continue
		}
		off := rng.IntN(len(b))
		b[off] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		type result struct {
			st  *restore.Stats
			err error
		}
		done := make(chan result, 1)
		go func() {
			st, err := restore.Restore(context.Background(), restore.Options{Dir: dir})
			done <- result{st, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: restore with byte %d of %s changed still runs after 30 s", i, off, filepath.Base(name))
		}
		if res.err == nil {
			// A byte of memory or of a value the process does not
			// check: it runs; end it.
			restored++
			unix.Kill(res.st.Pid, unix.SIGKILL)
			var ws unix.WaitStatus
			if _, err := unix.Wait4(res.st.Pid, &ws, 0, nil); err != nil {
				t.Fatalf("round %d: reap restored pid %d: %v", i, res.st.Pid, err)
			}
		}
		if kids := testutil.Children(t); len(kids) > 0 {
			t.Fatalf("round %d: byte %d of %s changed: restore (err %v) left %v", i, off, filepath.Base(name), res.err, kids)
		}
		os.RemoveAll(dir)
	}
	t.Logf("%d rounds, %d restored a process", flipRounds, restored)
}
