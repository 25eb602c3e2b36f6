package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSnapshotDump dumps with --leave-running processes whose memory
// changes all the time (test/subjects/churn.c: private, MADV_DONTFORK,
// MADV_WIPEONFORK and shared pages written in turn, each checked against
// the previous pass), a process alone and a tree: each is read through a
// snapshot child, runs on untouched, and is left with no child it did not
// have; the processes restored from the images find their memory as it
// was at one instant (else they print FAIL and exit).
func TestSnapshotDump(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	churn := testutil.BuildC(t, "churn.c")
	for _, tc := range []struct {
		name  string
		args  []string
		procs int
	}{
		{"process", []string{"16"}, 1},
		{"tree", []string{"16", "1"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testutil.StartSubject(t, churn, tc.args...)
			s.WaitTicks(t, 2)
			pids := append([]int{s.Pid}, childrenOf(t, s.Pid)...)
			if len(pids) != tc.procs {
				t.Fatalf("subject has processes %v, want %d", pids, tc.procs)
			}
			testutil.KillPidsAtCleanup(t, pids...)
			before := map[int]map[string]string{}
			kids := map[int][]int{}
			for _, pid := range pids {
				before[pid] = targetState(t, pid)
				kids[pid] = childrenOf(t, pid)
			}
			dir := filepath.Join(t.TempDir(), "images")
			_, errOut, code := runBinary(t, bin, "dump", "-t", strconv.Itoa(s.Pid), "-D", dir, "--leave-running", "-v", "2")
			if code != 0 {
				t.Fatalf("cryo dump: exit status %d\n%s", code, errOut)
			}
			if want := fmt.Sprintf(" snapshots=%d ", tc.procs); !strings.Contains(errOut, want) {
				t.Errorf("the dump's log does not say %q:\n%s", want, errOut)
			}
			for _, pid := range pids {
				if got := targetState(t, pid); !cmp.Equal(before[pid], got) {
					t.Errorf("pid %d changed (-before +after):\n%s", pid, cmp.Diff(before[pid], got))
				}
				if got := childrenOf(t, pid); !cmp.Equal(kids[pid], got) {
					t.Errorf("pid %d has children %v after the dump, %v before", pid, got, kids[pid])
				}
			}
			s.WaitTicks(t, 3)

			unix.Kill(s.Pid, unix.SIGKILL)
			s.ReapDumped(t)
			if err := testutil.WaitPidsFree(pids...); err != nil {
				t.Fatal(err)
			}
			if _, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d"); code != 0 {
				t.Fatalf("cryo restore -d: exit status %d\n%s", code, errOut)
			}
			s.Restored()
			// Enough passes for every page to be checked many times over.
			s.WaitTicks(t, 10)
			for _, pid := range pids[1:] {
				if st, err := proc.ReadStat(pid); err != nil || st.State == 'Z' {
					t.Errorf("restored child %d: state %c (%v)\n%s", pid, st.State, err, s.Output())
				}
			}
		})
	}
}

// childrenOf lists the children of process pid, zombies too.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	tids, err := proc.ReadTasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, tid := range tids {
		b, err := os.ReadFile(proc.Path(pid, fmt.Sprintf("task/%d/children", tid)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(b)) {
			k, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, k)
		}
	}
	return out
}
