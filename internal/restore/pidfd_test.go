package restore_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestorePidfd checkpoints test/subjects/pidfd.c, a parent holding
// pidfds of its two children, one of them a zombie, and of two it has
// reaped (two pidfds of the first, which stay of one process), and
// restores it:
// each pidfd refers to its child again (the fdinfo says its pid, and the
// subject checks that it signals, waits and polls through them), with
// its flags. An image whose pidfd names a process outside the checkpoint
// is refused before anything is made.
func TestRestorePidfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pidfd.c"))}
	child, zombie := int(s.ReadyUint(t, "child")), int(s.ReadyUint(t, "zombie"))
	pids := []int{s.Pid, child, zombie}
	testutil.KillPidsAtCleanup(t, pids...)
	want := map[string]int{"pidfd": child, "nbfd": child, "tfd": child, "zfd": zombie, "reapedfd": -1, "samefd": -1, "otherfd": -1}
	before := map[string]proc.Fdinfo{}
	for name := range want {
		before[name] = readFdinfo(t, s.Pid, int(s.ReadyUint(t, name)))
	}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(pids...); err != nil {
		t.Fatal(err)
	}
	dumped := dumpedFiles(t, c)
	for name, pid := range want {
		fd := int(s.ReadyUint(t, name))
		f := dumped[fd]
		if f.GetType() != pb.FdTypes_PIDFD || f.GetPidfd().GetNspid() != int32(pid) {
			t.Errorf("%s (fd %d): dumped as %v, want a pidfd of pid %d", name, fd, f, pid)
		}
	}

	// A pidfd of pid 1, outside the checkpoint.
	dir := copyDir(t, c.dir)
	var msgs []pb.Message
	for _, id := range slices.Sorted(maps.Keys(c.im.files)) {
		f := pb.Clone(c.im.files[id])
		if p := f.GetPidfd(); p != nil && p.GetNspid() == int32(child) {
			p.Nspid = 1
		}
		msgs = append(msgs, f)
	}
	rewriteImage(t, dir, image.Files, 0, msgs...)
	if _, err := restore.Restore(context.Background(), restore.Options{Dir: dir}); !errors.Is(err, restore.ErrImage) ||
		!strings.Contains(err.Error(), "pidfd of pid 1,") {
		t.Fatalf("restore of a pidfd of pid 1: %v, want ErrImage naming it", err)
	}

	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
	for name, pid := range want {
		fd := int(s.ReadyUint(t, name))
		after := readFdinfo(t, s.Pid, fd)
		got, err := after.Pidfd()
		if err != nil {
			t.Fatalf("%s (fd %d): %v", name, fd, err)
		}
		if got.Pid != pid || after.Flags != before[name].Flags {
			t.Errorf("%s (fd %d): a pidfd of pid %d with flags %#o, want pid %d with flags %#o",
				name, fd, got.Pid, after.Flags, pid, before[name].Flags)
		}
	}
	if before["nbfd"].Flags&unix.O_NONBLOCK == 0 || before["tfd"].Flags&unix.PIDFD_THREAD == 0 {
		t.Errorf("nbfd, tfd: flags %#o, %#o before the dump, without PIDFD_NONBLOCK, PIDFD_THREAD", before["nbfd"].Flags, before["tfd"].Flags)
	}
	if st, err := proc.ReadStat(zombie); err != nil || st.State != 'Z' {
		t.Errorf("zombie %d: %+v, %v; want a zombie", zombie, st, err)
	}
}

func readFdinfo(t *testing.T, pid, fd int) proc.Fdinfo {
	t.Helper()
	info, err := proc.ReadFdinfo(pid, fd)
	if err != nil {
		t.Fatalf("fdinfo %d of pid %d: %v", fd, pid, err)
	}
	return info
}
