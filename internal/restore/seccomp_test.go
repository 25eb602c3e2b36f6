package restore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreSeccomp restores processes under seccomp
// (test/subjects/seccomp.c): two stacked filters, one with
// SECCOMP_FILTER_FLAG_LOG; threads with filters of their own and a shared
// prefix; threads that share theirs (TSYNC); a thread in strict mode, the
// leader or another; a filter that kills the process for calls cryo
// injects; filters installed without no_new_privs by a process that has
// since given up CAP_SYS_ADMIN, which the restore gives them before its
// credentials; a filter larger than cryo's scratch buffer. The state
// oracle finds each thread's mode, filter count and no_new_privs back; the
// subject finds, at every tick, every forbidden call failing as it did and
// the others working, which proves the order of the filters too; and a
// second dump of the restored process writes the same seccomp state. A
// restore that fails after the filters are installed leaves nothing
// behind. The threads that shared their filters still do: a filter
// installed with SECCOMP_FILTER_FLAG_TSYNC after the restore reaches all
// of them.
func TestRestoreSeccomp(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode  string
		tsync bool
	}{
		{mode: "stacked"},
		{mode: "threads"},
		{mode: "tsync", tsync: true},
		{mode: "strict"},
		// The leader, into which the restore injects the most, even the
		// munmap of its scratch mapping at resume.
		{mode: "strictleader"},
		{mode: "nommap"},
		// Filters that only CAP_SYS_ADMIN could install, which the
		// process gave up.
		{mode: "nonnp"},
		// A filter larger than cryo's scratch buffer.
		{mode: "big"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), tc.mode)}
			s.WaitTicks(t, 3)
			c := dumpAndReap(t, s)
			// A restore that fails once the filters are in leaves nothing.
			if _, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, FailAt: "resume"}); !errors.Is(err, restore.ErrInjected) {
				t.Fatalf("restore failed at resume: %v, want ErrInjected", err)
			}
			restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, c.ticks+3)
			again := filepath.Join(t.TempDir(), "again")
			if _, err := dumpLeaveRunning(s.Pid, again); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(seccompState(t, c.dir, s.Pid), seccompState(t, again, s.Pid)); d != "" {
				t.Errorf("seccomp state dumped from the restored process differs (-first +second):\n%s", d)
			}
			if tc.tsync {
				if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
					t.Fatal(err)
				}
				waitField(t, s, "tsync", func(v int) bool { return v == 2 })
			}
			s.WaitTicks(t, s.Ticks()+3)
		})
	}
}

// seccompImages is what a checkpoint holds of seccomp: each thread's mode
// and first filter, and seccomp.img if there is one.
type seccompImages struct {
	Modes   map[uint32]pb.SeccompMode
	First   map[uint32]uint32
	Filters []*pb.SeccompFilter
}

// seccompState reads the seccompImages of process pid in dir.
func seccompState(t *testing.T, dir string, pid int) seccompImages {
	t.Helper()
	c := testutil.ReadCheckpoint(t, dir, pid)
	st := seccompImages{Modes: map[uint32]pb.SeccompMode{}, First: map[uint32]uint32{}}
	for tid, core := range c.Cores {
		st.Modes[tid] = core.ThreadCore.GetSeccompMode()
		if core.ThreadCore.SeccompFilter != nil {
			st.First[tid] = core.ThreadCore.GetSeccompFilter()
		}
	}
	entry := &pb.SeccompEntry{}
	switch err := c.Dir.ReadImage(image.Seccomp, 0, entry); {
	case err == nil:
		st.Filters = entry.SeccompFilters
	case !errors.Is(err, fs.ErrNotExist):
		t.Fatal(err)
	}
	return st
}

// TestRestoreBadSeccompImages restores checkpoints whose seccomp state is
// broken or asks for more than restricting the process: each fails with a
// clear error before anything is built.
func TestRestoreBadSeccompImages(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), "threads")}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	tids := c.im.threads()
	// editFilters rewrites seccomp.img of a copy of the checkpoint.
	editFilters := func(t *testing.T, edit func(f []*pb.SeccompFilter)) string {
		dir := copyDir(t, c.dir)
		st := seccompState(t, dir, s.Pid)
		edit(st.Filters)
		rewriteImage(t, dir, image.Seccomp, 0, &pb.SeccompEntry{SeccompFilters: st.Filters})
		return dir
	}
	// editCore rewrites the core of the leader of a copy.
	editCore := func(t *testing.T, edit func(tc *pb.ThreadCoreEntry)) string {
		dir := copyDir(t, c.dir)
		core := readImages(t, dir, s.Pid).cores[uint32(s.Pid)]
		edit(core.ThreadCore)
		rewriteImage(t, dir, image.Core, uint32(s.Pid), core)
		return dir
	}
	notify := []byte{6, 0, 0, 0, 0, 0, 0xc0, 0x7f} // ret SECCOMP_RET_USER_NOTIF
	for _, tc := range []struct {
		name   string
		broken func(t *testing.T) string
		want   error
		says   string
	}{
		{"missing seccomp.img", func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Remove(filepath.Join(dir, "seccomp.img")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, restore.ErrImage, "seccomp.img"},
		{"filter mode without a filter", func(t *testing.T) string {
			return editCore(t, func(tc *pb.ThreadCoreEntry) { tc.SeccompFilter = nil })
		}, restore.ErrImage, "without a filter"},
		{"filter out of range", func(t *testing.T) string {
			return editCore(t, func(tc *pb.ThreadCoreEntry) { tc.SeccompFilter = pb.Uint32(99) })
		}, restore.ErrImage, "filter 99 of 6"},
		{"filters in a loop", func(t *testing.T) string {
			return editFilters(t, func(f []*pb.SeccompFilter) { f[0].Prev = pb.Uint32(1) })
		}, restore.ErrImage, "after 6 filters"},
		{"half an instruction", func(t *testing.T) string {
			return editFilters(t, func(f []*pb.SeccompFilter) { f[1].Filter = f[1].Filter[:12] })
		}, restore.ErrImage, "not a seccomp BPF program"},
		{"a listener asked for", func(t *testing.T) string {
			return editFilters(t, func(f []*pb.SeccompFilter) {
				f[0].Flags = pb.Uint32(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
			})
		}, restore.ErrUnsupported, "flags 0x8"},
		{"a filter that notifies a listener", func(t *testing.T) string {
			return editFilters(t, func(f []*pb.SeccompFilter) { f[0].Filter = notify })
		}, restore.ErrUnsupported, "SECCOMP_RET_USER_NOTIF"},
		{"TSYNC from another thread", func(t *testing.T) string {
			// The second thread's only filter, C.
			return editFilters(t, func(f []*pb.SeccompFilter) {
				f[2].Flags = pb.Uint32(unix.SECCOMP_FILTER_FLAG_TSYNC)
			})
		}, restore.ErrImage, fmt.Sprintf("thread %d, not the leader", tids[1])},
		{"TSYNC from the leader beside other threads' own", func(t *testing.T) string {
			return editFilters(t, func(f []*pb.SeccompFilter) {
				f[0].Flags = pb.Uint32(unix.SECCOMP_FILTER_FLAG_TSYNC)
			})
		}, restore.ErrImage, "another thread has its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := restore.Restore(context.Background(), restore.Options{Dir: tc.broken(t)})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("restore: %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	// The checkpoint itself restores.
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, c.ticks+3)
}

// TestRestoreSeccompTree restores a parent under one filter and its
// child, which added one of its own: each comes back with its filters
// (the child checks its own all the time, and says so if one is not as
// it should be).
func TestRestoreSeccompTree(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), "fork")}
	child, err := strconv.Atoi(s.Ready["child"])
	if err != nil {
		t.Fatalf("ready line: child=%q", s.Ready["child"])
	}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, c.ticks+5)
	for pid, want := range map[int]int{s.Pid: 1, child: 2} {
		st, err := proc.ReadStatus(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.Seccomp != 2 || st.SeccompFilters != want {
			t.Errorf("pid %d: seccomp mode %d with %d filters, want mode 2 with %d", pid, st.Seccomp, st.SeccompFilters, want)
		}
	}
}
