package restore_test

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// manyFdsSpare is how many numbers test/subjects/manyfds.c leaves free
// in its RLIMIT_NOFILE above the descriptors it opens.
const manyFdsSpare = 100

// manyFdsCount is how many descriptors a subject of this process may
// open, up to want, with manyFdsSpare more in its limit: root without
// CAP_SYS_RESOURCE cannot go above its own hard limit.
func manyFdsCount(t *testing.T, want int) int {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if n := int(min(rl.Max, 1<<20)) - manyFdsSpare; n < want {
		t.Logf("RLIMIT_NOFILE hard limit %d: %d descriptors, not %d", rl.Max, n, want)
		return n
	}
	return want
}

// TestRestoreManyFds checkpoints test/subjects/manyfds.c, which holds
// 10,000 descriptors (dups of a few files, files of their own at their
// positions, pipes, eventfds, in a table with holes) and an RLIMIT_NOFILE
// little above them, and restores it: every descriptor comes back at its
// number (the subject checks their files, sharing, positions, counters
// and close-on-exec flags tick after tick; the state oracle compares
// them and the limits with /proc), though neither the process's limit nor
// cryo's leaves room above the table for the restore to open files first.
func TestRestoreManyFds(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	count := manyFdsCount(t, 10000)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "manyfds.c"), dir, strconv.Itoa(count), strconv.Itoa(manyFdsSpare)), dir: dir}
	c := dumpAndReap(t, s)
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, fd := range fds {
		want = append(want, int(fd.GetFd()))
	}
	slices.Sort(want)
	// The subject's, and those it was started with.
	if len(want) < int(s.ReadyUint(t, "count")) || want[len(want)-1] != int(s.ReadyUint(t, "max")) {
		t.Fatalf("the images hold %d descriptors up to %d, want %s up to %s", len(want), want[len(want)-1], s.Ready["count"], s.Ready["max"])
	}
	// The restore's stub starts with this process's soft limit, which may
	// leave room above the table: no more than the process had, so that
	// the restore must make the table without it.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if tight := uint64(count + manyFdsSpare); rl.Cur > tight {
		// syscall's, which children then inherit, unlike the soft limit
		// the Go runtime raised at start.
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: tight, Max: rl.Max}); err != nil {
			t.Fatal(err)
		}
		defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2)
	got, err := proc.ReadFds(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored descriptors (-dumped +restored):\n%s", diff)
	}
}

// TestRestoreFdBatches restores test/subjects/manyfds.c with enough
// descriptors for several batches of the 253 that travel together
// (SCM_MAX_FD): once in a table with holes, the highest of which the
// socket they travel through takes, so that descriptors go both below and
// above it, with room in its RLIMIT_NOFILE above the table; once in a
// table of every number below the limit, hard and soft, so that the
// socket goes above it, in the room cryo's hard limit leaves (the task
// step sets the dumped limits later). Every descriptor must be back at its number with
// its close-on-exec flag (and, the subject checks, its file, position and
// sharing), and nothing else open: not the socket.
func TestRestoreFdBatches(t *testing.T) {
	testutil.RequireRoot(t)
	for _, spare := range []int{manyFdsSpare, 0} {
		t.Run(fmt.Sprintf("spare%d", spare), func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			count := manyFdsCount(t, 1000)
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "manyfds.c"), dir, strconv.Itoa(count), strconv.Itoa(spare)), dir: dir}
			c := dumpAndReap(t, s)
			ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
			fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
			if err != nil {
				t.Fatal(err)
			}
			cloexec := map[int]bool{}
			for _, fd := range fds {
				cloexec[int(fd.GetFd())] = fd.GetFlags()&unix.FD_CLOEXEC != 0
			}
			want := slices.Sorted(maps.Keys(cloexec))
			top := want[len(want)-1]
			hole := top - 1
			for hole >= 0 && slices.Contains(want, hole) {
				hole--
			}
			above := len(want) - sort.SearchInts(want, hole)
			switch {
			case len(want) < 3*253:
				t.Fatalf("%d descriptors: not several batches", len(want))
			case spare == manyFdsSpare && (hole < 0 || above == 0):
				t.Fatalf("%d descriptors up to %d, highest hole %d with %d above: the socket would not sit between them", len(want), top, hole, above)
			case spare < manyFdsSpare && len(want) != count+spare:
				t.Fatalf("%d descriptors up to %d: not every number below the limit of %d", len(want), top, count+spare)
			}
			t.Logf("%d descriptors up to %d, limit %d, highest hole %d below %d of them", len(want), top, count+spare, hole, above)
			restoreSubject(t, s, c, restore.Options{})
			s.WaitTicks(t, 2)
			got, err := proc.ReadFds(s.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("restored descriptors (-dumped +restored):\n%s", diff)
			}
			for _, fd := range got {
				info, err := proc.ReadFdinfo(s.Pid, fd)
				if err != nil {
					t.Fatal(err)
				}
				if now := info.Flags&unix.O_CLOEXEC != 0; now != cloexec[fd] {
					t.Errorf("fd %d: close-on-exec %v, dumped %v", fd, now, cloexec[fd])
				}
			}
		})
	}
}
