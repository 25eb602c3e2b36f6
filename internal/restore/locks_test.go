package restore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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

// startLocks starts test/subjects/locks.c in a directory of its own, with
// args after it.
func startLocks(t *testing.T, args ...string) (*subject, string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "locks.c"), append([]string{dir}, args...)...)}, dir
}

// openIn opens a file of the subject's directory in the test process.
func openIn(t *testing.T, dir, name string) int {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, name), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// getlk asks who holds a lock conflicting with a write lock on
// [start, start+len) with F_GETLK or F_OFD_GETLK.
func getlk(t *testing.T, fd, cmd int, start, n int64) unix.Flock_t {
	t.Helper()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: unix.SEEK_SET, Start: start, Len: n}
	if err := unix.FcntlFlock(uintptr(fd), cmd, &lk); err != nil {
		t.Fatalf("fcntl %d on %d: %v", cmd, fd, err)
	}
	return lk
}

// liveLocks reads the lock lines of descriptors of pid, keyed by the
// names of the subject's ready line, without what changes between
// processes (the line numbers, device and inode).
func liveLocks(t *testing.T, s *subject, names ...string) map[string][]proc.Lock {
	t.Helper()
	out := map[string][]proc.Lock{}
	for _, n := range names {
		info, err := proc.ReadFdinfo(s.Pid, int(s.ReadyUint(t, n)))
		if err != nil {
			t.Fatal(err)
		}
		locks, err := info.Locks()
		if err != nil {
			t.Fatal(err)
		}
		for i := range locks {
			locks[i].ID, locks[i].Major, locks[i].Minor, locks[i].Ino = 0, 0, 0, 0
		}
		out[n] = locks
	}
	return out
}

var lockFds = []string{"posix", "ofd", "ofd_dup", "flock", "shared"}

// TestRestoreFileLocks dumps a process holding POSIX, OFD and flock
// locks, restores it, and checks that it holds them again before it
// runs: its fdinfo shows the same locks as before the dump, another
// process cannot take a conflicting lock (F_GETLK names the restored
// process), and the restored process can still release them, after
// which the other process gets them.
func TestRestoreFileLocks(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startLocks(t)
	s.WaitTicks(t, 3)
	before := liveLocks(t, s, lockFds...)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3) // its own check: 5 lock lines
	if d := cmp.Diff(before, liveLocks(t, s, lockFds...)); d != "" {
		t.Errorf("locks of the restored process (-dumped +restored):\n%s", d)
	}

	posix, ofd, fl, shared := openIn(t, dir, "posix"), openIn(t, dir, "ofd"), openIn(t, dir, "flock"), openIn(t, dir, "shared")
	for _, tc := range []struct {
		name       string
		fd, cmd    int
		start, len int64
		wantType   int16
		wantPid    int32
	}{
		{"posix write", posix, unix.F_GETLK, 3, 1, unix.F_WRLCK, int32(s.Pid)},
		{"posix read", posix, unix.F_GETLK, 1000, 0, unix.F_RDLCK, int32(s.Pid)},
		{"ofd", ofd, unix.F_OFD_GETLK, 14, 1, unix.F_WRLCK, -1},
		{"ofd seen by posix", ofd, unix.F_GETLK, 0, 6, unix.F_WRLCK, -1},
		{"free", posix, unix.F_GETLK, 10, 90, unix.F_UNLCK, 0},
	} {
		lk := getlk(t, tc.fd, tc.cmd, tc.start, tc.len)
		if lk.Type != tc.wantType || tc.wantType != unix.F_UNLCK && lk.Pid != tc.wantPid {
			t.Errorf("%s: F_GETLK says type %d pid %d, want type %d pid %d", tc.name, lk.Type, lk.Pid, tc.wantType, tc.wantPid)
		}
	}
	if err := unix.FcntlFlock(uintptr(posix), unix.F_SETLK, &unix.Flock_t{Type: unix.F_RDLCK, Start: 9, Len: 1}); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("read lock on a byte the restored process write-locks: %v, want EAGAIN", err)
	}
	for _, tc := range []struct {
		name string
		fd   int
		how  int
	}{{"flock", fl, unix.LOCK_SH}, {"shared", shared, unix.LOCK_EX}} {
		if err := unix.Flock(tc.fd, tc.how|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("flock %s %d: %v, want EWOULDBLOCK", tc.name, tc.how, err)
		}
	}
	if err := unix.Flock(shared, unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Errorf("shared flock beside the restored one: %v", err)
	}
	unix.Flock(shared, unix.LOCK_UN)

	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitField(t, s, "unlocked", func(v int) bool { return v == 1 })
	whole := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(posix), unix.F_SETLK, &whole); err != nil {
		t.Errorf("posix write lock after the restored process released its own: %v", err)
	}
	if err := unix.FcntlFlock(uintptr(ofd), unix.F_OFD_SETLK, &whole); err != nil {
		t.Errorf("OFD write lock after the restored process released its own: %v", err)
	}
	for _, fd := range []int{fl, shared} {
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("flock after the restored process released its own: %v", err)
		}
	}
	s.WaitTicks(t, 3)
}

// lockElsewhere has a child process take POSIX lock lk on the file at
// path, and hold it until the test ends; it returns the child's pid.
// Taken here, the lock would go when the restore, which runs in this
// process, closes its descriptor of the file: POSIX locks belong to a
// process, and go with the close of any of its descriptors of the file.
func lockElsewhere(t *testing.T, path string, lk unix.Flock_t) int {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run", "^TestLockHolder$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("CRYO_TEST_LOCK=%s %d %d %d", path, lk.Type, lk.Start, lk.Len))
	hold, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hold.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("lock holder: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// TestLockHolder is lockElsewhere's child: it takes the lock that
// CRYO_TEST_LOCK says (path, type, start, length), says "locked", and
// holds it until its standard input closes.
func TestLockHolder(t *testing.T) {
	spec := os.Getenv("CRYO_TEST_LOCK")
	if spec == "" {
		t.Skip("lockElsewhere's child")
	}
	var path string
	var lk unix.Flock_t
	if _, err := fmt.Sscan(spec, &path, &lk.Type, &lk.Start, &lk.Len); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

// TestRestoreMappingLock restores a process holding an flock through a
// shared mapping only, its descriptor closed, as the JVM holds its
// hsperfdata file: the restored process holds it again, through no
// descriptor, and another process cannot take it.
func TestRestoreMappingLock(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startLocks(t, "mapped")
	path := filepath.Join(dir, "mapped")
	held := func(when string) {
		t.Helper()
		fd := openIn(t, dir, "mapped")
		if err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("%s: flock of %s: %v, want EWOULDBLOCK", when, path, err)
		}
		unix.Close(fd)
	}
	held("before the dump")
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{}) // the state oracle compares its locks
	held("after the restore")
	fds, err := proc.ReadFds(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, _ := os.Readlink(proc.Path(s.Pid, fmt.Sprintf("fd/%d", fd))); l == path {
			t.Errorf("the restored process has %s open as fd %d", path, fd)
		}
	}
	s.WaitTicks(t, 3)
}

// TestRestoreLockHeldElsewhere takes, in the test process, a lock that
// conflicts with one of the checkpoint between dump and restore: the
// restore fails naming the test process as the holder and leaves nothing
// behind, and succeeds once the lock is released.
func TestRestoreLockHeldElsewhere(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startLocks(t)
	c := dumpAndReap(t, s)
	me := os.Getpid()
	for _, tc := range []struct {
		name string
		// take takes the lock through fd and returns the pid of its
		// holder.
		take func(t *testing.T, fd int) (int, error)
		file string
		want string // with the holder's pid
	}{
		{"posix", func(t *testing.T, _ int) (int, error) {
			return lockElsewhere(t, filepath.Join(dir, "posix"), unix.Flock_t{Type: unix.F_RDLCK, Start: 9, Len: 1}), nil
		}, "posix", fmt.Sprintf("write POSIX lock on fd %s bytes 0-9: %v: pid %%d (ADVISORY POSIX READ", s.Ready["posix"], restore.ErrLocked)},
		{"ofd", func(_ *testing.T, fd int) (int, error) {
			return me, unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 0})
		}, "ofd", fmt.Sprintf("write OFD lock on fd %s bytes 5-14: %v: pid %%d through fd", s.Ready["ofd"], restore.ErrLocked)},
		{"flock", func(_ *testing.T, fd int) (int, error) { return me, unix.Flock(fd, unix.LOCK_EX) },
			"shared", fmt.Sprintf("read flock lock on fd %s: %v: pid %%d (ADVISORY FLOCK WRITE", s.Ready["shared"], restore.ErrLocked)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := unix.Open(filepath.Join(dir, tc.file), unix.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			holder, err := tc.take(t, fd)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(tc.want, holder)
			children := testutil.Children(t)
			log, buf := newLog()
			_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
			if !errors.Is(err, restore.ErrLocked) {
				t.Fatalf("restore: %v, want ErrLocked\nlog:\n%s", err, buf)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			t.Logf("refused: %v", err)
			checkNothingLeft(t, children, s.Pid)
		})
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
}

// TestRestoreBadLockImages restores checkpoints of the locks subject whose
// filelocks.img is broken: each fails before anything is built, naming
// the descriptor, and the intact images restore afterwards.
func TestRestoreBadLockImages(t *testing.T) {
	testutil.RequireRoot(t)
	s, _ := startLocks(t)
	c := dumpAndReap(t, s)
	locks, err := image.ReadAll[pb.FileLockEntry](c.im.dir, image.FileLocks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 5 {
		t.Fatalf("%d locks in the images, want 5", len(locks))
	}
	// A file the process has open and does not map.
	var unmapped int32
	for id, f := range c.im.files {
		if strings.HasSuffix(f.GetReg().GetName(), "/posix") {
			unmapped = int32(id)
		}
	}
	mappingLock := func(fd int32) func(l *pb.FileLockEntry) {
		return func(l *pb.FileLockEntry) {
			l.Flag, l.Start, l.Len, l.Fd = 2, 0, 0, fd
		}
	}
	for _, tc := range []struct {
		name string
		edit func(l *pb.FileLockEntry)
		// unsupported: the error wraps ErrUnsupported, not ErrImage.
		unsupported bool
		want        string
	}{
		{"lease of a range", func(l *pb.FileLockEntry) { l.Flag = 8 }, false, "write lease on fd"},
		{"unknown kind", func(l *pb.FileLockEntry) { l.Flag = 3 }, false, "of kind 0x3"},
		{"unknown type", func(l *pb.FileLockEntry) { l.Type = 2 }, false, "of type 2"},
		{"negative start", func(l *pb.FileLockEntry) { l.Start = -1 }, false, "of range -1+"},
		{"range past the largest offset", func(l *pb.FileLockEntry) { l.Start, l.Len = 10, math.MaxInt64 }, false, "of range 10+"},
		{"no such descriptor", func(l *pb.FileLockEntry) { l.Fd = 999 }, false, "fd 999, which the process does not have"},
		{"mapping of no file", mappingLock(-999), false, "the mapping of file 999, not a file whose mapping may hold it"},
		{"posix lock of a mapping", func(l *pb.FileLockEntry) { l.Fd = -unmapped }, false, "not a file whose mapping may hold it"},
		{"mapping of a file not mapped", mappingLock(-unmapped), false, "a file the process does not map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.Children(t)
			dir := copyDir(t, c.dir)
			var msgs []pb.Message
			for i, l := range locks {
				l = pb.Clone(l)
				if i == 0 {
					tc.edit(l)
				}
				msgs = append(msgs, l)
			}
			rewriteImage(t, dir, image.FileLocks, 0, msgs...)
			_, err := restore.Restore(context.Background(), restore.Options{Dir: dir})
			want := restore.ErrImage
			if tc.unsupported {
				want = restore.ErrUnsupported
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "images: ") {
				t.Errorf("restore: %v, want %v in step images saying %q", err, want, tc.want)
			}
			t.Logf("error: %v", err)
			checkNothingLeft(t, before, s.Pid)
		})
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
}

// TestRestoreLeases dumps a process holding a read lease and a write
// lease whose breaks it is told of with SIGUSR2 (F_SETSIG), and restores
// it: crit reads the leases in filelocks.img as CRIU writes them (FL_LEASE
// 8, F_RDLCK 0 or F_WRLCK 1, the whole file), the state oracle finds the
// same /proc/locks lines of the process, the process finds its leases
// every tick (F_GETLEASE, F_GETSIG), and the break an open of the write
// lease's file starts signals it with SIGUSR2.
func TestRestoreLeases(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startLocks(t, "lease")
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	out, err := exec.Command("crit", "decode", "-i", filepath.Join(c.dir, "filelocks.img")).Output()
	if err != nil {
		t.Fatalf("crit decode filelocks.img: %v", err)
	}
	var img struct {
		Entries []struct {
			Flag, Type uint32
			Pid, Fd    int32
			Start, Len int64
		}
	}
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatalf("crit's filelocks.img JSON: %v", err)
	}
	leases := map[int32]uint32{}
	for _, e := range img.Entries {
		if e.Flag == 8 {
			if e.Pid != int32(s.Pid) || e.Start != 0 || e.Len != 0 {
				t.Errorf("lease entry %+v, want pid %d, the whole file", e, s.Pid)
			}
			leases[e.Fd] = e.Type
		}
	}
	want := map[int32]uint32{int32(s.ReadyUint(t, "lease")): unix.F_RDLCK, int32(s.ReadyUint(t, "wlease")): unix.F_WRLCK}
	if d := cmp.Diff(want, leases); d != "" {
		t.Errorf("leases of filelocks.img by fd, as crit reads them (-want +got):\n%s", d)
	}

	restoreSubject(t, s, c, restore.Options{}) // the state oracle compares /proc/locks
	s.WaitTicks(t, 3)                          // its own check: F_GETLEASE, F_GETSIG
	var active int
	all, err := proc.ReadLocks()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range all {
		if l.Class == proc.LockLease && l.Pid == s.Pid && l.Mode == "ACTIVE" {
			active++
		}
	}
	if active != 2 {
		t.Errorf("/proc/locks shows %d active leases of pid %d, want 2", active, s.Pid)
	}
	fd, err := unix.Open(filepath.Join(dir, "wlease"), unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("open of the write lease's file: %v, want EWOULDBLOCK", err)
	}
	waitField(t, s, "breaks", func(v int) bool { return v >= 1 })
}

// TestRestoreLeaseRefused restores a checkpoint of a process holding
// leases while the test holds the write lease's file open, then with the
// read lease's file another user's and the process without CAP_LEASE in
// its images (the restore takes the lease with root's): the first fails
// naming the test's descriptor, the second as the process may not take
// the lease; each leaves nothing behind, and the intact checkpoint
// restores once the file is open nowhere else.
func TestRestoreLeaseRefused(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startLocks(t, "lease")
	c := dumpAndReap(t, s)
	for _, tc := range []struct {
		name string
		// broken makes the restore of the images it returns fail.
		broken func(t *testing.T) string
		// allowChanged lets the restore past a file changed since.
		allowChanged string
		want         string
	}{
		{"open elsewhere", func(t *testing.T) string {
			openIn(t, dir, "wlease") // until the subtest ends
			return c.dir
		}, "", fmt.Sprintf("write lease on fd %s: %v: the file is open by pid %d fd", s.Ready["wlease"], restore.ErrLocked, os.Getpid())},
		{"not the owner", func(t *testing.T) string {
			path := filepath.Join(dir, "lease")
			if err := os.Chown(path, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chown(path, 0, 0) })
			images := copyDir(t, c.dir)
			core := pb.Clone(c.im.cores[uint32(s.Pid)])
			core.ThreadCore.Creds.CapEff = []uint32{0, 0}
			rewriteImage(t, images, image.Core, uint32(s.Pid), core)
			return images
		}, filepath.Join(dir, "lease"), fmt.Sprintf("read lease on fd %s of %s: the file is uid 4242's, and the process (fsuid 0) has no CAP_LEASE", s.Ready["lease"], filepath.Join(dir, "lease"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			images := tc.broken(t)
			children := testutil.Children(t)
			log, buf := newLog()
			_, err := restore.Restore(context.Background(), restore.Options{Dir: images, Log: log, AllowChanged: []string{tc.allowChanged}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v, want an error saying %q\nlog:\n%s", err, tc.want, buf)
			}
			t.Logf("refused: %v", err)
			checkNothingLeft(t, children, s.Pid)
		})
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
}
