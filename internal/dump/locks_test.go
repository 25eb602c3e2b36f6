package dump_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// critLock is a filelocks.img entry as crit decodes it.
type critLock struct {
	Flag, Type uint32
	Pid, Fd    int32
	Start, Len int64
}

// TestDumpFileLocks dumps test/subjects/locks.c and finds each of its
// locks in filelocks.img with CRIU's meaning (FL_POSIX 1, FL_FLOCK 2,
// FL_OFD 4; F_RDLCK 0, F_WRLCK 1; length 0 to the end of the file), once
// per open file description, as cryo and crit read it; and the flock that
// only a mapping holds, naming the mapped file by its negative id.
func TestDumpFileLocks(t *testing.T) {
	testutil.RequireRoot(t)
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "locks.c"), tmp, "mapped")
	d := dumpProcess(t, s.Pid, true)
	critDecode(t, d.dir)
	dir, err := image.Open(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := image.ReadAll[pb.FileEntry](dir, image.Files, 0)
	if err != nil {
		t.Fatal(err)
	}
	mapped := slices.IndexFunc(files, func(f *pb.FileEntry) bool { return f.GetReg().GetName() == filepath.Join(tmp, "mapped") })
	if mapped < 0 {
		t.Fatalf("files.img has no entry of %s/mapped", tmp)
	}
	fd := func(k string) int32 { return int32(s.ReadyUint(t, k)) }
	pid := int32(s.Pid)
	want := []critLock{
		{1, unix.F_WRLCK, pid, fd("posix"), 0, 10},
		{1, unix.F_RDLCK, pid, fd("posix"), 100, 0},
		{4, unix.F_WRLCK, pid, fd("ofd"), 5, 10},
		{2, unix.F_WRLCK, pid, fd("flock"), 0, 0},
		{2, unix.F_RDLCK, pid, fd("shared"), 0, 0},
		{2, unix.F_WRLCK, pid, -int32(files[mapped].GetId()), 0, 0},
	}
	sortLocks := cmpopts.SortSlices(func(a, b critLock) bool { return a.Fd < b.Fd || a.Fd == b.Fd && a.Start < b.Start })
	entries, err := image.ReadAll[pb.FileLockEntry](dir, image.FileLocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []critLock
	for _, e := range entries {
		got = append(got, critLock{e.GetFlag(), e.GetType(), e.GetPid(), e.GetFd(), e.GetStart(), e.GetLen()})
	}
	if diff := cmp.Diff(want, got, sortLocks); diff != "" {
		t.Errorf("filelocks.img (-want +got):\n%s", diff)
	}
	out, err := exec.Command("crit", "decode", "-i", filepath.Join(d.dir, "filelocks.img")).Output()
	if err != nil {
		t.Fatalf("crit decode filelocks.img: %v", err)
	}
	var img struct{ Entries []critLock }
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatalf("crit's filelocks.img JSON: %v", err)
	}
	if diff := cmp.Diff(want, img.Entries, sortLocks); diff != "" {
		t.Errorf("crit decodes filelocks.img as (-want +got):\n%s", diff)
	}
	s.WaitTicks(t, 3)
}

// TestDumpRefusesLocks checks that a lease being broken, a lock only a
// mapping keeps of a file mapped twice (which mapping holds it is
// unknown), and an OFD write lock only a private mapping keeps (the
// restore maps the file from a descriptor open for reading) are refused
// by name, and that the refused dump leaves the process running with its
// locks.
func TestDumpRefusesLocks(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode string
		// then is done to the subject's directory once it is ready.
		then func(t *testing.T, dir string)
		want []string
	}{
		{"lease", breakLease, []string{"lease being broken", "LEASE UNLCK"}},
		{"mapped2", nil, []string{"FLOCK WRITE", "held through the mapping of", "/mapped", "2 mappings"}},
		{"mapped-ofd", nil, []string{"OFDLCK WRITE", "held through the mapping of", "/mapped", "does not write the file"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			s := testutil.StartSubject(t, testutil.BuildC(t, "locks.c"), dir, tc.mode)
			if tc.then != nil {
				tc.then(t, dir)
			}
			// Its own check as it ticks on: it still holds its 5 locks.
			expectRefused(t, s, dump.Options{}, tc.want...)
		})
	}
}

// breakLease starts the break of the subject's read lease, as another
// process's open for writing does: a non-blocking open fails, and the
// lease shows BREAKING, to go (UNLCK), until its holder gives it up or
// the kernel's lease-break-time (45 s) runs out.
func breakLease(t *testing.T, dir string) {
	fd, err := unix.Open(filepath.Join(dir, "lease"), unix.O_WRONLY|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("open of the leased file for writing: %v, want EWOULDBLOCK", err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "LEASE  BREAKING  UNLCK") {
		t.Fatalf("/proc/locks shows no lease breaking to none:\n%s", b)
	}
}
