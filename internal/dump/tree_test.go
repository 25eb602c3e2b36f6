package dump_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpTree dumps test/subjects/tree.c, leaving it running: every
// process of the tree goes on (the subject checks its links and the
// numbers passed from process to process), and the images list the tree
// with its links, the zombies with their exit status, and one file entry
// for the file the processes share.
func TestDumpTree(t *testing.T) {
	testutil.RequireRoot(t)
	s, _, pids := testutil.StartTree(t)
	// The helper that makes the orphan's group again: its leader exited.
	leader := int(s.ReadyUint(t, "leader"))
	s.WaitTicks(t, 3)
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 10)
	critDecode(t, d.dir)
	if d.stats.Processes != len(pids) {
		t.Errorf("dumped %d processes, want %d", d.stats.Processes, len(pids))
	}
	dir, err := image.Open(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := image.ReadAll[pb.PstreeEntry](dir, image.Pstree, 0)
	if err != nil {
		t.Fatal(err)
	}
	root := uint32(pids["root"])
	entry := func(pid, ppid, pgid int, threads ...uint32) *pb.PstreeEntry {
		return &pb.PstreeEntry{Pid: uint32(pid), Ppid: uint32(ppid), Pgid: uint32(pgid), Sid: root, Threads: threads}
	}
	one := func(pid int) []uint32 { return []uint32{uint32(pid)} }
	want := []*pb.PstreeEntry{
		entry(pids["root"], 0, pids["root"], one(pids["root"])...),
		entry(pids["writer"], pids["root"], pids["root"], one(pids["writer"])...),
		entry(pids["reader"], pids["root"], pids["root"], one(pids["reader"])...),
		entry(pids["group"], pids["root"], pids["group"], one(pids["group"])...),
		entry(pids["twin"], pids["root"], pids["root"], one(pids["twin"])...),
		entry(pids["orphan"], pids["root"], leader, one(pids["orphan"])...),
		entry(pids["exited"], pids["root"], pids["root"], one(pids["exited"])...),
		entry(pids["killed"], pids["root"], pids["root"], one(pids["killed"])...),
		entry(pids["grandchild"], pids["group"], pids["group"], one(pids["grandchild"])...),
		entry(leader, pids["root"], leader, one(leader)...),
	}
	if diff := cmp.Diff(want, tree); diff != "" {
		t.Errorf("pstree.img (-want +got):\n%s", diff)
	}
	for _, z := range []struct {
		name          string
		state, status uint32
	}{{"exited", 2, 7 << 8}, {"killed", 2, 15}, {"leader", 4, 0}} {
		pid := pids[z.name]
		if z.name == "leader" {
			pid = leader
		}
		core := &pb.CoreEntry{}
		if err := dir.ReadImage(image.Core, uint32(pid), core); err != nil {
			t.Fatal(err)
		}
		if st, code := core.GetTc().GetTaskState(), core.GetTc().GetExitCode(); st != z.state || code != z.status {
			t.Errorf("%s: task state %d, exit code %#x, want %d and %#x", z.name, st, code, z.state, z.status)
		}
	}
	fd, err := strconv.Atoi(s.Ready["file"])
	if err != nil {
		t.Fatal(err)
	}
	fileOf := func(pid int) uint32 {
		t.Helper()
		fds, err := image.ReadAll[pb.FdinfoEntry](dir, image.Fdinfo, uint32(pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fds {
			if int(e.GetFd()) == fd {
				return e.GetId()
			}
		}
		t.Fatalf("pid %d has no fd %d in the images", pid, fd)
		return 0
	}
	if a, b := fileOf(pids["root"]), fileOf(pids["writer"]); a != b {
		t.Errorf("the shared file is entry %d in the root and %d in the writer, want one entry", a, b)
	}
	// The twin shares the root's descriptor table and filesystem context.
	core := &pb.CoreEntry{}
	if err := dir.ReadImage(image.Core, uint32(pids["twin"]), core); err != nil {
		t.Fatal(err)
	}
	if ids := core.GetIds(); ids.GetFilesId() != root || ids.GetFsId() != root {
		t.Errorf("the twin's descriptor table %d and filesystem context %d, want the root's, %d", ids.GetFilesId(), ids.GetFsId(), root)
	}
}

func ptr[T any](v T) *T { return &v }

// TestDumpTreeRefuses dumps trees that a restore could not make again:
// each is refused, naming what, and goes on as it was.
func TestDumpTreeRefuses(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tt := range []struct {
		arg  string
		want []string
	}{
		{"uts", []string{"uts:["}},
		{"siblings", []string{"descriptor table (CLONE_FILES)"}},
		{"session", []string{"whose leader is in the tree"}},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			s, _, _ := testutil.StartTree(t, tt.arg)
			s.WaitTicks(t, 2)
			expectRefused(t, s, dump.Options{}, tt.want...)
		})
	}
	// The moved child's child is in a session whose leader, the root,
	// is outside a dump of the moved child.
	s, _, _ := testutil.StartTree(t, "session")
	s.WaitTicks(t, 2)
	moved := int(s.ReadyUint(t, "moved"))
	log, buf := newLog()
	_, err := dump.Dump(context.Background(), dump.Options{Pid: moved, Dir: filepath.Join(t.TempDir(), "images"), Log: log})
	if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), "whose leader is outside the tree") {
		t.Errorf("dump of pid %d: %v, want %v: ... whose leader is outside the tree\nlog:\n%s", moved, err, dump.ErrUnsupported, buf)
	}
	s.WaitTicks(t, 1)
	// The root first: moved is its child, and dies with it.
	s.Kill()
	if err := testutil.WaitPidsFree(moved); err != nil {
		t.Error(err)
	}
}

// TestDumpRefusesVforkWait dumps test/subjects/vforker.c, whose child
// waits in vfork for a grandchild that never execs: that child cannot be
// stopped, and a dump that tried waited for ever (zdtm vfork00 hung). It
// is refused before anything of it is seized, both ways, and the subject
// goes on.
func TestDumpRefusesVforkWait(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "vforker.c"))
	s.WaitTicks(t, 2)
	for _, leave := range []bool{true, false} {
		expectRefused(t, s, dump.Options{LeaveRunning: leave}, "pid "+s.Ready["child"], "shares its memory (vfork")
		s.WaitTicks(t, 2)
	}
}
