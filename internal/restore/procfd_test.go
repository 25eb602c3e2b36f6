package restore_test

import (
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreProcFiles checkpoints test/subjects/procfd.c, which holds its
// namespaces (/proc/self/ns/NAME) and its /proc status file open, and
// restores it: every namespace descriptor comes back as the namespace the
// restored process runs in (a new time namespace, the others cryo's), the
// status file as its own, at its position; the subject checks them tick
// after tick. The images name each namespace by the id the process's ids
// give it, as CRIU's do.
func TestRestoreProcFiles(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"))}
	c := dumpAndReap(t, s)
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	want := map[uint32]uint32{ // clone flag -> id
		unix.CLONE_NEWNET: ids.GetNetNsId(), unix.CLONE_NEWUTS: ids.GetUtsNsId(), unix.CLONE_NEWIPC: ids.GetIpcNsId(),
		unix.CLONE_NEWPID: ids.GetPidNsId(), unix.CLONE_NEWUSER: ids.GetUserNsId(), unix.CLONE_NEWNS: ids.GetMntNsId(),
		unix.CLONE_NEWCGROUP: ids.GetCgroupNsId(), unix.CLONE_NEWTIME: ids.GetTimeNsId(),
	}
	seen := map[uint32]bool{}
	for _, f := range c.im.files {
		if f.GetType() != fdinfo.FdTypes_NS {
			continue
		}
		cf, id := f.GetNsf().GetNsCflag(), f.GetNsf().GetNsId()
		if w, ok := want[cf]; !ok || id != w || id == 0 || seen[cf] {
			t.Errorf("NS entry %d: clone flag %#x, namespace id %d; the process's ids give %d", f.GetId(), cf, id, w)
		}
		seen[cf] = true
	}
	if len(seen) != len(want) {
		t.Errorf("NS entries for %d kinds of namespace, want %d", len(seen), len(want))
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
}
