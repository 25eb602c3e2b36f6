package proc

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fdinfoSeeds are captures of this machine, one per kind of file.
var fdinfoSeeds = []string{
	"fdinfo-epoll.txt", "fdinfo-eventfd.txt", "fdinfo-fanotify.txt", "fdinfo-file-locked.txt",
	"fdinfo-inotify.txt", "fdinfo-inotify-watches.txt", "fdinfo-pidfd.txt", "fdinfo-pidfd-reaped.txt", "fdinfo-pipe.txt", "fdinfo-signalfd.txt",
	"fdinfo-signalfd-rt.txt", "fdinfo-timerfd.txt", "fdinfo-timerfd-expired.txt", "fdinfo-timerfd-abstime.txt",
	"fdinfo-ptmx.txt",
}

func TestParseFdinfo(t *testing.T) {
	// x/sys has O_LARGEFILE = 0 on amd64, but the kernel sets it in f_flags.
	const cloexec, nonblock, largefile = unix.O_CLOEXEC, unix.O_NONBLOCK, 0o100000
	for _, tc := range []struct {
		seed string
		want Fdinfo
	}{
		{"fdinfo-epoll.txt", Fdinfo{0, cloexec | unix.O_RDWR, 17, 1038, []KeyValue{
			{"tfd", "6 events: 80000019 data:                6  pos:0 ino:40e sdev:10"},
			{"tfd", "5 events:       19 data:                5  pos:0 ino:40e sdev:10"},
		}, nil}},
		{"fdinfo-eventfd.txt", Fdinfo{0, cloexec | nonblock | unix.O_RDWR, 17, 1038, []KeyValue{
			{"eventfd-count", "5"}, {"eventfd-id", "1"}, {"eventfd-semaphore", "0"},
		}, nil}},
		{"fdinfo-file-locked.txt", Fdinfo{5, cloexec | largefile | unix.O_RDWR, 27, 9978145, []KeyValue{
			{"lock", "1: FLOCK  ADVISORY  WRITE 12930 fe:00:9978145 0 EOF"},
		}, nil}},
		{"fdinfo-inotify.txt", Fdinfo{0, cloexec, 17, 1038, []KeyValue{
			{"inotify wd", "1 ino:3c4a3 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a3c4030000000000"},
		}, nil}},
		{"fdinfo-pidfd.txt", Fdinfo{0, cloexec | unix.O_RDWR, 4, 12931, []KeyValue{
			{"Pid", "12930"}, {"NSpid", "12930"},
		}, nil}},
		{"fdinfo-pipe.txt", Fdinfo{0, nonblock | unix.O_WRONLY, 16, 21459, nil, nil}},
		{"fdinfo-signalfd.txt", Fdinfo{0, cloexec | unix.O_RDWR, 17, 1038, []KeyValue{
			{"sigmask", "0000000000000201"},
		}, nil}},
		{"fdinfo-timerfd.txt", Fdinfo{0, cloexec | unix.O_RDWR, 17, 1038, []KeyValue{
			{"clockid", "1"}, {"ticks", "0"}, {"settime flags", "00"},
			{"it_value", "(99, 999990189)"}, {"it_interval", "(1, 500)"},
		}, nil}},
		// Before Linux 5.14 there is no ino line.
		{"", Fdinfo{Pos: -1, Flags: 0o2, MntID: 3}},
	} {
		in := []byte("pos:\t-1\nflags:\t02\nmnt_id:\t3\n")
		if tc.seed != "" {
			in = readSeed(t, tc.seed)
		}
		got, err := ParseFdinfo(in)
		if err != nil {
			t.Errorf("%s: %v", tc.seed, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.seed, d)
		}
	}
}

func TestFdinfoLookup(t *testing.T) {
	f := Fdinfo{Extra: []KeyValue{{"tfd", "1"}, {"tfd", "2"}}}
	if v, ok := f.Lookup("tfd"); v != "1" || !ok {
		t.Errorf("Lookup(tfd) = %q, %v", v, ok)
	}
	if v, ok := f.Lookup("pos"); ok {
		t.Errorf("Lookup(pos) = %q, %v", v, ok)
	}
}

func TestParseFdinfoErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"pos:\t0\nflags:\t02\n",
		"pos:\t0\nmnt_id:\t1\n",
		"flags:\t02\nmnt_id:\t1\n",
		"pos:\t0\nflags:\t08\nmnt_id:\t1\n",
		"pos:\t0\nflags:\t040000000000\nmnt_id:\t1\n",
		"pos:\tx\nflags:\t02\nmnt_id:\t1\n",
		"pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t-1\n",
		"pos:\t0\npos:\t0\nflags:\t02\nmnt_id:\t1\n",
		"pos:\t0\nflags:\t02\nmnt_id:\t1\nextra\n",
	} {
		if f, err := ParseFdinfo([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseFdinfo(%q) = %+v, %v; want ErrSyntax", in, f, err)
		}
	}
}

func TestReadFdinfoSelf(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	info, err := ReadFdinfo(0, fd)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if info.Pos != 5 || info.Flags&unix.O_ACCMODE != unix.O_RDWR || info.Flags&unix.O_CLOEXEC == 0 ||
		info.Ino != st.Ino || info.MntID <= 0 {
		t.Errorf("fdinfo of %s: %+v, inode %d", f.Name(), info, st.Ino)
	}
	fds, err := ReadFds(0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(fds) || !slices.Contains(fds, fd) || fds[0] != 0 {
		t.Errorf("ReadFds(0) = %v, want sorted, with 0 and %d", fds, fd)
	}
	if _, err := ReadFdinfo(0, 1<<20); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fdinfo of a closed fd: %v, want ErrNotExist", err)
	}
}

func FuzzParseFdinfo(f *testing.F) {
	for _, name := range fdinfoSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseFdinfo(b)
		if !checkFuzzErr(t, err) {
			_, err = info.TTYIndex()
			checkFuzzErr(t, err)
		}
	})
}

// TestTTYIndex reads the slave number of a pseudo-terminal master.
func TestTTYIndex(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  bool
	}{
		{"pos:\t0\nflags:\t02\nmnt_id:\t1\ntty-index:\t4\n", 4, false},
		{"pos:\t0\nflags:\t02\nmnt_id:\t1\ntty-index:\t1048575\n", 1048575, false},
		{"pos:\t0\nflags:\t02\nmnt_id:\t1\n", 0, true},
		{"pos:\t0\nflags:\t02\nmnt_id:\t1\ntty-index:\t-1\n", 0, true},
		{"pos:\t0\nflags:\t02\nmnt_id:\t1\ntty-index:\t4294967296\n", 0, true},
	} {
		info, err := ParseFdinfo([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := info.TTYIndex()
		if got != tc.want || (err != nil) != tc.err || err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("TTYIndex of %q = %d, %v; want %d, error %v (ErrSyntax)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
