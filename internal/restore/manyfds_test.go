package restore_test

import (
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
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
	fds, err := image.ReadAll[fdinfo.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
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
