package testutil

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/proc"
)

// Pss sums the proportional set size of the processes, in KiB, from
// /proc/PID/smaps_rollup: memory shared by k processes counts 1/k in each.
func Pss(t testing.TB, pids []int) int {
	t.Helper()
	sum := 0
	for _, pid := range pids {
		b, err := os.ReadFile(proc.Path(pid, "smaps_rollup"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "Pss:" {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("pid %d: smaps_rollup: %q: %v", pid, sc.Text(), err)
				}
				sum, found = sum+n, true
			}
		}
		if !found {
			t.Fatalf("pid %d: no Pss in smaps_rollup:\n%s", pid, b)
		}
	}
	return sum
}

// StartCow starts test/subjects/cow.c with mib mebibytes shared by the
// parent and readers+1 children, and a file of its own mapped privately,
// and returns it and the pids of the tree, the parent first, which are
// killed and reaped when the test ends.
func StartCow(t testing.TB, mib, readers int) (*Subject, []int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cow.dat")
	s := StartSubject(t, BuildC(t, "cow.c"), strconv.Itoa(mib), strconv.Itoa(readers), file)
	pids := []int{s.Pid}
	for _, k := range strings.Split(s.Ready["children"], ",") {
		pid, err := strconv.Atoi(k)
		if err != nil {
			t.Fatalf("cow ready line: children=%q", s.Ready["children"])
		}
		pids = append(pids, pid)
	}
	KillPidsAtCleanup(t, pids...)
	return s, pids
}
