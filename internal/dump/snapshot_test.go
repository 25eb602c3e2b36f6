package dump_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSnapshotFallback dumps with LeaveRunning a process that cannot
// fork: a user's process at its RLIMIT_NPROC. Its memory is read frozen,
// the log says why, and the process runs on with no child.
func TestSnapshotFallback(t *testing.T) {
	testutil.RequireRoot(t)
	// Set before the user is, as root here lacks CAP_SYS_RESOURCE.
	s := testutil.StartSubject(t, "/usr/bin/prlimit", "--nproc=1", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
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
