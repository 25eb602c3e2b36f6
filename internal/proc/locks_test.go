package proc

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// lockSeeds are captures of this machine: /proc/locks with every class a
// process can take and waiters, and fdinfos with lock lines.
var lockSeeds = []string{
	"locks.txt", "fdinfo-file-locked.txt", "fdinfo-file-posix-locks.txt", "fdinfo-file-ofd-lock.txt", "fdinfo-file-lease.txt",
}

func TestParseLocks(t *testing.T) {
	got, err := ParseLocks(readSeed(t, "locks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const eof = math.MaxInt64
	want := []Lock{
		{1, false, LockLease, "ACTIVE", LockRead, 18793, 0xfe, 0, 9977899, 0, eof},
		{2, false, LockFlock, "ADVISORY", LockWrite, 18793, 0xfe, 0, 9978039, 0, eof},
		{2, true, LockFlock, "ADVISORY", LockRead, 18797, 0xfe, 0, 9978039, 0, eof},
		{3, false, LockOFD, "ADVISORY", LockRead, -1, 0xfe, 0, 9977958, 100, 149},
		{4, false, LockPOSIX, "ADVISORY", LockRead, 18793, 0xfe, 0, 9977958, 20, eof},
		{5, false, LockPOSIX, "ADVISORY", LockWrite, 18793, 0xfe, 0, 9977958, 0, 9},
		{5, true, LockPOSIX, "ADVISORY", LockWrite, 18795, 0xfe, 0, 9977958, 0, 4},
		{5, true, LockOFD, "ADVISORY", LockWrite, -1, 0xfe, 0, 9977958, 3, 3},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestFdinfoLocks(t *testing.T) {
	const eof = math.MaxInt64
	for _, tc := range []struct {
		seed string
		want []Lock
	}{
		{"fdinfo-file-locked.txt", []Lock{{1, false, LockFlock, "ADVISORY", LockWrite, 12930, 0xfe, 0, 9978145, 0, eof}}},
		{"fdinfo-file-posix-locks.txt", []Lock{
			{1, false, LockPOSIX, "ADVISORY", LockWrite, 18793, 0xfe, 0, 9977958, 0, 9},
			{2, false, LockPOSIX, "ADVISORY", LockRead, 18793, 0xfe, 0, 9977958, 20, eof},
		}},
		{"fdinfo-file-ofd-lock.txt", []Lock{{1, false, LockOFD, "ADVISORY", LockWrite, -1, 0xfe, 0, 9979061, 100, 109}}},
		{"fdinfo-file-lease.txt", []Lock{{1, false, LockLease, "ACTIVE", LockWrite, 13996, 0xfe, 0, 9979368, 0, eof}}},
		{"fdinfo-pipe.txt", nil},
	} {
		f, err := ParseFdinfo(readSeed(t, tc.seed))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Locks()
		if err != nil {
			t.Errorf("%s: %v", tc.seed, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.seed, d)
		}
	}
}

func TestParseLockKernelWords(t *testing.T) {
	// Words of older kernels and rare states, as lock_get_status writes them.
	for _, tc := range []struct {
		in   string
		want Lock
	}{
		{"7: POSIX  MANDATORY WRITE 12 08:01:5 0 EOF", Lock{7, false, LockPOSIX, "MANDATORY", LockWrite, 12, 8, 1, 5, 0, math.MaxInt64}},
		{"1: FLOCK  MSNFS     RW    12 08:01:5 0 EOF", Lock{1, false, LockFlock, "MSNFS", "RW", 12, 8, 1, 5, 0, math.MaxInt64}},
		{"2: LEASE  BREAKING  UNLCK 12 08:01:5 0 EOF", Lock{2, false, LockLease, "BREAKING", "UNLCK", 12, 8, 1, 5, 0, math.MaxInt64}},
		{"3: POSIX  *NOINODE* READ  12 <none>:0 4 4", Lock{3, false, LockPOSIX, "*NOINODE*", LockRead, 12, 0, 0, 0, 4, 4}},
		{"4: UNKNOWN UNKNOWN  READ  12 103:a1:5 0 EOF", Lock{4, false, LockUnknown, "UNKNOWN", LockRead, 12, 0x103, 0xa1, 5, 0, math.MaxInt64}},
		// Words of a kernel yet to come, kept for the dump to refuse.
		{"5: LOCKF  SOMETIMES EXCL  12 08:01:5 0 EOF", Lock{5, false, "LOCKF", "SOMETIMES", "EXCL", 12, 8, 1, 5, 0, math.MaxInt64}},
	} {
		got, err := ParseLock(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q: (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestParseLockErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"POSIX  ADVISORY  WRITE 1 fe:00:5 0 9",
		"x: POSIX  ADVISORY  WRITE 1 fe:00:5 0 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:5 0",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:5 0 9 10",
		"1: -> -> POSIX  ADVISORY  WRITE 1 fe:00:5 0 9",
		"1: POSIX  ADVISORY  WRITE x fe:00:5 0 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00 0 9",
		"1: POSIX  ADVISORY  WRITE 1 fg:00:5 0 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:-5 0 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:5 -1 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:5 10 9",
		"1: POSIX  ADVISORY  WRITE 1 fe:00:5 0 9223372036854775808",
	} {
		if _, err := ParseLock(in); !checkFuzzErr(t, err) {
			t.Errorf("ParseLock(%q) succeeded", in)
		}
	}
	if _, err := ParseLocks([]byte("1: POSIX  ADVISORY  WRITE 1 fe:00:5 0 9\n2: nonsense\n")); !checkFuzzErr(t, err) {
		t.Error("ParseLocks accepted a bad second line")
	}
}

// TestReadLocks takes one lock of each class a process can hold in this
// process and finds each where the kernel shows it: POSIX and OFD locks on
// the descriptor they were taken through, flock locks on every
// descriptor of the open file description, and all in /proc/locks.
func TestReadLocks(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	posix, ofd, fl := open("posix"), open("ofd"), open("flock")
	if err := unix.FcntlFlock(posix.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 10, Len: 5}); err != nil {
		t.Fatal(err)
	}
	if err := unix.FcntlFlock(ofd.Fd(), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_RDLCK, Start: 3}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fl.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	dup, err := unix.Dup(int(fl.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	pid := os.Getpid()
	ino := func(f *os.File) (uint32, uint32, uint64) {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino
	}
	lock := func(f *os.File, class, typ string, pid int, start, end int64) Lock {
		maj, min, i := ino(f)
		return Lock{ID: 1, Class: class, Mode: "ADVISORY", Type: typ, Pid: pid, Major: maj, Minor: min, Ino: i, Start: start, End: end}
	}
	want := map[int]Lock{
		int(posix.Fd()): lock(posix, LockPOSIX, LockWrite, pid, 10, 14),
		int(ofd.Fd()):   lock(ofd, LockOFD, LockRead, -1, 3, math.MaxInt64),
		int(fl.Fd()):    lock(fl, LockFlock, LockWrite, pid, 0, math.MaxInt64),
		dup:             lock(fl, LockFlock, LockWrite, pid, 0, math.MaxInt64),
	}
	for fd, w := range want {
		info, err := ReadFdinfo(0, fd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := info.Locks()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]Lock{w}, got); d != "" {
			t.Errorf("fd %d: (-want +got):\n%s", fd, d)
		}
	}
	all, err := ReadLocks()
	if err != nil {
		t.Fatal(err)
	}
	for fd, w := range want {
		found := false
		for _, l := range all {
			l.ID = 1
			found = found || l == w
		}
		if !found {
			t.Errorf("fd %d: %v not in /proc/locks", fd, w)
		}
	}
}

func FuzzParseLocks(f *testing.F) {
	for _, name := range lockSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseLocks(b)
		checkFuzzErr(t, err)
		if info, err := ParseFdinfo(b); err == nil {
			_, err = info.Locks()
			checkFuzzErr(t, err)
		}
	})
}
