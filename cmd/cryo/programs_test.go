package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// poolScript is a Python multiprocessing pool of two workers squaring the
// numbers 1, 2, 3... in order, its results checked and printed as ticks.
const poolScript = `
import multiprocessing as mp, os, sys, time
def square(n):
    time.sleep(0.02)
    return n, n * n
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        for i, (n, sq) in enumerate(pool.imap(square, range(1, 10**9))):
            if sq != n * n or n != i + 1:
                print(f"FAIL result {n} {sq} at {i}", flush=True)
                sys.exit(1)
            print(f"tick {i} pid={os.getpid()} n={n} ok", flush=True)
`

// TestRestoreCommandPrograms checkpoints real programs that are trees of
// processes with `cryo dump` and restores them with `cryo restore -d`:
// each goes on counting where it was, with no number skipped or repeated.
func TestRestoreCommandPrograms(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	for _, tt := range []struct {
		name string
		args []string
	}{
		// A shell loop that runs sleep, a child it waits for: long
		// enough to be there still when the dump comes, on a loaded
		// machine too.
		{"bash-sleep", []string{"/bin/bash", "-c", `i=0; while :; do i=$((i+1)); echo "tick $i pid=$$ n=$i ok"; sleep 0.4; done`}},
		{"python-pool", []string{"/usr/bin/python3", "-c", poolScript}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.args[0]); err != nil {
				t.Fatalf("%s is needed (make test installs it): %v", tt.args[0], err)
			}
			s := testutil.StartSubject(t, tt.args[0], tt.args[1:]...)
			s.WaitTicks(t, 5)
			// The shell's sleep comes and goes: dumped as soon as it is
			// there, it is still.
			for deadline := time.Now().Add(testutil.SubjectTimeout); len(childrenOf(t, s.Pid)) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("pid %d has no child", s.Pid)
				}
			}
			dir := dumpSubject(t, bin, s)
			// The processes dumped: a shell's sleep comes and goes.
			tree := testutil.DumpedPids(t, dir)
			if len(tree) < 2 {
				t.Fatalf("pid %d was dumped without a child", s.Pid)
			}
			if err := testutil.WaitPidsFree(tree...); err != nil {
				t.Fatal(err)
			}
			testutil.KillPidsAtCleanup(t, tree...)
			dumped := len(s.TickLines())
			out, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d")
			s.Restored()
			if code != 0 {
				t.Fatalf("cryo restore -d: exit status %d\n%s%s", code, out, errOut)
			}
			s.WaitTicks(t, 10)
			ticks := s.TickLines()
			for i, tk := range ticks[1:] {
				prev, n := atoiOr(ticks[i].Fields["n"]), atoiOr(tk.Fields["n"])
				if n != prev+1 {
					t.Errorf("n=%d follows n=%d (%d ticks before the dump)", n, prev, dumped)
				}
			}
			if len(ticks) <= dumped {
				t.Errorf("no tick after the restore")
			}
		})
	}
}

func atoiOr(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
