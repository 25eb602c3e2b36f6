package dump_test

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// startPidfd starts test/subjects/pidfd.c with args; its processes are
// killed and reaped when the test ends.
func startPidfd(t *testing.T, args ...string) *testutil.Subject {
	t.Helper()
	s := testutil.StartSubject(t, testutil.BuildC(t, "pidfd.c"), args...)
	testutil.KillPidsAtCleanup(t, s.Pid, int(s.ReadyUint(t, "child")), int(s.ReadyUint(t, "zombie")))
	s.WaitTicks(t, 3)
	return s
}

// TestDumpPidfd dumps the pidfd subject, which runs on with its own
// checks passing: its pidfds of its children, one a zombie, are PIDFD
// entries naming their pids, with their flags and inode, and crit reads
// files.img (Debian's crit predates pidfds: it shows their ids only).
func TestDumpPidfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := startPidfd(t)
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 5)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	crit := critFiles(t, d.dir)
	for _, tc := range []struct {
		name, pid string
		flags     uint32
	}{
		{"pidfd", "child", unix.O_RDWR},
		{"nbfd", "child", unix.O_RDWR | unix.O_NONBLOCK},
		{"tfd", "child", unix.O_RDWR | unix.PIDFD_THREAD},
		{"zfd", "zombie", unix.O_RDWR},
	} {
		fd := s.ReadyUint(t, tc.name)
		f := im.file(t, uint32(fd))
		e := f.GetPidfd()
		pid := int32(s.ReadyUint(t, tc.pid))
		var st unix.Stat_t
		if err := unix.Stat(proc.Path(s.Pid, "fd/"+strconv.FormatUint(fd, 10)), &st); err != nil {
			t.Fatal(err)
		}
		if f.GetType() != pb.FdTypes_PIDFD || e.GetNspid() != pid || e.GetFlags() != tc.flags || e.GetIno() != uint32(st.Ino) {
			t.Errorf("%s (fd %d): %v entry %v, want a pidfd of pid %d, flags %#o, inode %d", tc.name, fd, f.GetType(), e, pid, tc.flags, st.Ino)
		}
		c, ok := crit[f.GetId()]
		switch {
		case !ok:
			t.Errorf("%s: crit does not show file %d", tc.name, f.GetId())
		case c.Type == "" && c.Pidfd == nil:
			// A crit older than CRIU 4.0 knows no pidfd.
		case c.Type != "PIDFD" || c.Pidfd == nil || c.Pidfd.Nspid != pid:
			t.Errorf("%s: crit decodes file %d as %+v", tc.name, f.GetId(), c)
		}
	}
	if t.Failed() {
		t.Logf("dump log:\n%s", d.log)
	}
}

// TestDumpPidfdRefused dumps the pidfd subject holding a pidfd of a
// process outside the checkpoint, its parent: the dump refuses it, naming
// it, and the subject runs on.
func TestDumpPidfdRefused(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("parent", func(t *testing.T) {
		s := startPidfd(t, "parent")
		expectRefused(t, s, dump.Options{LeaveRunning: true}, "fd "+s.Ready["parentfd"],
			"pidfd of pid "+strconv.Itoa(os.Getpid()), "not a process of the checkpoint")
	})
}
