package dump_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSnapshotFallback dumps with LeaveRunning a process that cannot
// fork: a user's process at its RLIMIT_NPROC. Its memory is read frozen,
// the log says why, and the process runs on with no child.
func TestSnapshotFallback(t *testing.T) {
	testutil.RequireRoot(t)
	// Set before the user is, as root here lacks CAP_SYS_RESOURCE. The
	// user is one no other test runs as: RLIMIT_NPROC counts all of a
	// user's processes, and other packages' tests run meanwhile.
	s := testutil.StartSubject(t, "/usr/bin/prlimit", "--nproc=1", "/usr/bin/setpriv", "--reuid=64999", "--regid=64999", "--clear-groups",
		"/bin/sh", "-c", "echo ready; exec sleep 1000")
	log, buf := newLog()
	st, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), LeaveRunning: true, Log: log})
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, buf)
	}
	if st.Snapshots != 0 || !strings.Contains(buf.String(), "no snapshot") || !strings.Contains(buf.String(), "resource temporarily unavailable") {
		t.Errorf("%d snapshots, want none, and a log that says why:\n%s", st.Snapshots, buf)
	}
	if st.Pages == 0 {
		t.Errorf("no page dumped")
	}
	checkNoSnapshot(t, s.Pid)
	if !s.Alive() {
		t.Errorf("subject died:\n%s", s.Output())
	}
}

// TestSnapshotReadCopiesNothing reads a 64 MiB process through its
// snapshot child, checking halfway that the child still shares all but a
// few pages with the process: a read that pins pages (process_vm_readv)
// would make the kernel copy each one.
func TestSnapshotReadCopiesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "mem.c"), "64")
	var checked bool
	var private uint64
	log, buf := newLog()
	st, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), LeaveRunning: true, Log: log,
		Progress: func(done, total uint64) {
			if checked || done < total/2 {
				return
			}
			checked = true
			for _, k := range snapshotChildren(t, s.Pid) {
				private += rollup(t, k, "Private_Clean") + rollup(t, k, "Private_Dirty")
			}
		}})
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, buf)
	}
	if st.Snapshots != 1 || !checked {
		t.Fatalf("%d snapshots, checked %v, want 1 and a check halfway", st.Snapshots, checked)
	}
	if private > 4<<20 {
		t.Errorf("the snapshot child has %d KiB of its own halfway through the read, want the process's pages shared", private>>10)
	}
	checkNoSnapshot(t, s.Pid)
}

// snapshotChildren lists the children of pid in a tracing stop.
func snapshotChildren(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(proc.Path(pid, fmt.Sprintf("task/%d/children", pid)))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		k, _ := strconv.Atoi(f)
		if st, err := proc.ReadStat(k); err == nil && st.State == 't' {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		t.Errorf("pid %d has no snapshot child: children %q", pid, b)
	}
	return out
}

// rollup reads a field of /proc/PID/smaps_rollup, in bytes.
func rollup(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(proc.Path(pid, "smaps_rollup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Fatalf("no %s in smaps_rollup of pid %d", field, pid)
	return 0
}
