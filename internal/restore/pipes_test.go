package restore_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// pipesSubjectFds are the names of test/subjects/pipes.c's descriptors.
var pipesSubjectFds = []string{"pr", "pr_dup", "pr_own", "pw", "pw_dup", "pw_own", "big_r", "big_w", "small_r",
	"pkt_r", "pkt_w", "fifo", "ghost_r", "ghost_w", "wronly"}

// TestRestorePipes checkpoints test/subjects/pipes.c and restores it: its
// own checks (the status flags of each open file description, pipe sizes,
// the data held, the unlinked FIFOs) pass tick after tick; descriptors
// that shared an open file description at the dump share one again, and
// no others do; the unlinked FIFOs come back unlinked.
func TestRestorePipes(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir), dir: dir}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[fdinfo.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	fileOf := map[int]uint32{}
	for _, fd := range fds {
		fileOf[int(fd.GetFd())] = fd.GetId()
	}
	// sharing lists the pairs of named descriptors on one open file
	// description.
	sharing := func(same func(a, b int) bool) []string {
		var out []string
		for i, a := range pipesSubjectFds {
			for _, b := range pipesSubjectFds[i+1:] {
				if same(int(s.ReadyUint(t, a)), int(s.ReadyUint(t, b))) {
					out = append(out, a+"="+b)
				}
			}
		}
		return out
	}
	want := sharing(func(a, b int) bool { return fileOf[a] == fileOf[b] })
	if !slices.Equal(want, []string{"pr=pr_dup", "pw=pw_dup"}) {
		t.Fatalf("the images share file entries between %v, want pr=pr_dup and pw=pw_dup", want)
	}

	_, log := restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
	got := sharing(func(a, b int) bool {
		same, err := kernel.SameFile(s.Pid, a, s.Pid, b)
		if err != nil {
			t.Fatalf("kcmp fds %d and %d of pid %d: %v", a, b, s.Pid, err)
		}
		return same
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored descriptors sharing an open file description (-dumped +restored):\n%s\nlog:\n%s", diff, log)
	}
	// The unlinked FIFOs were made again for the restore, and unlinked.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"fifo"}) {
		t.Errorf("the subject's directory holds %v after the restore, want only its FIFO", names)
	}
}
