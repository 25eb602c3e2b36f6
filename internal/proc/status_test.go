package proc

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// statusMin has the required keys only.
const statusMin = "Name:\tx\nState:\tR (running)\nTgid:\t7\nPid:\t8\nPPid:\t1\nTracerPid:\t0\n" +
	"Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t \nThreads:\t2\nSigQ:\t0/10\n" +
	"SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n" +
	"SigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n" +
	"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n" +
	"CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"

func TestParseStatus(t *testing.T) {
	minimal := Status{
		Name: "x", Umask: -1, State: 'R', Tgid: 7, Pid: 8, PPid: 1,
		Uid: [4]uint32{1, 2, 3, 4}, Gid: [4]uint32{5, 6, 7, 8},
		Threads: 2, SigQueueLimit: 10,
	}
	for _, tc := range []struct {
		name string
		in   string
		want Status
	}{
		{
			name: "capture of sleep",
			in:   string(readSeed(t, "status-sleep.txt")),
			want: Status{
				Name: "x) (y z", Umask: 0o22, State: 'S',
				Tgid: 13150, Pid: 13150, PPid: 13147,
				NStgid: []int{13150}, NSpid: []int{13150}, NSpgid: []int{13145}, NSsid: []int{8744},
				Threads: 1, SigQueueLimit: 96364,
				CapPrm: 0x1fffeffffff, CapEff: 0x1fffeffffff, CapBnd: 0x1fffeffffff,
				UntagMask: ^uint64(0),
			},
		},
		{name: "required keys only", in: statusMin, want: minimal},
		{
			name: "every field set",
			in: strings.NewReplacer(
				"Name:\tx", "Name:\t a\\nb\\\\c\td:",
				"Groups:\t ", "Groups:\t0 4 27 ",
				"SigQ:\t0/10", "SigQ:\t3/18446744073709551615",
				"SigBlk:\t0000000000000000", "SigBlk:\tfffffffe7ffbfeff",
				"CapAmb:\t0000000000000000", "CapAmb:\t0000000000000400",
				"NoNewPrivs:\t0", "NoNewPrivs:\t1",
				"State:\tR (running)", "State:\tZ",
			).Replace(statusMin) +
				"Umask:\t0777\nSeccomp:\t2\nSeccomp_filters:\t3\nNSpid:\t8\t1\nNStgid:\t7\t1\nNSpgid:\t1\t1\nNSsid:\t1\t1\nVmLck:\t      24 kB\nuntag_mask:\t0x7fffffffffff\nx86_Thread_features:\tshstk wrss \nx86_Thread_features_locked:\tshstk\nFuture:\tx\n",
			want: Status{
				Name: " a\nb\\c\td:", Umask: 0o777, State: 'Z', Tgid: 7, Pid: 8, PPid: 1,
				Uid: [4]uint32{1, 2, 3, 4}, Gid: [4]uint32{5, 6, 7, 8}, Groups: []uint32{0, 4, 27},
				NStgid: []int{7, 1}, NSpid: []int{8, 1}, NSpgid: []int{1, 1}, NSsid: []int{1, 1},
				Threads: 2, SigQueued: 3, SigQueueLimit: RlimInfinity,
				SigBlk: 0xfffffffe7ffbfeff, CapAmb: 1 << 10, NoNewPrivs: true, Seccomp: 2, SeccompFilters: 3, VmLck: 24 << 10, UntagMask: 0x7fffffffffff,
				ThreadFeatures: []string{"shstk", "wrss"},
			},
		},
	} {
		got, err := ParseStatus([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, in := range []string{
		"",
		strings.Replace(statusMin, "Pid:\t8\n", "", 1),
		strings.Replace(statusMin, "SigBlk:", "SigBlK:", 1),
		strings.Replace(statusMin, "Uid:\t1\t2\t3\t4", "Uid:\t1\t2\t3", 1),
		strings.Replace(statusMin, "Gid:\t5", "Gid:\t-5", 1),
		strings.Replace(statusMin, "SigBlk:\t0000000000000000", "SigBlk:\t1ffffffffffffffff", 1),
		strings.Replace(statusMin, "CapEff:\t0000000000000000", "CapEff:\tx", 1),
		strings.Replace(statusMin, "SigQ:\t0/10", "SigQ:\t0", 1),
		strings.Replace(statusMin, "SigQ:\t0/10", "SigQ:\t0/x", 1),
		strings.Replace(statusMin, "State:\tR (running)", "State:\tRunning", 1),
		strings.Replace(statusMin, "State:\tR (running)", "State:\t", 1),
		strings.Replace(statusMin, "NoNewPrivs:\t0", "NoNewPrivs:\t2", 1),
		strings.Replace(statusMin, "Name:\tx", "Name: x", 1),
		strings.Replace(statusMin, "Name:\tx", "Name:\tx\\", 1),
		strings.Replace(statusMin, "Name:\tx", "Name:\tx\\t", 1),
		strings.Replace(statusMin, "Threads:\t2", "Threads:\t2\nThreads:\t2", 1),
		statusMin + "VmLck:\t24\n",
		statusMin + "Umask:\t9\n",
		statusMin + "Umask:\t-1\n",
		statusMin + "Umask:\t01000\n",
		statusMin + "no colon\n",
		statusMin + "\n",
	} {
		if s, err := ParseStatus([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseStatus(%q) = %+v, %v; want ErrSyntax", in, s, err)
		}
	}
}

func TestReadStatusSelf(t *testing.T) {
	s, err := ReadStatus(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pid != os.Getpid() || s.Tgid != s.Pid || s.PPid != os.Getppid() || s.Uid[1] != uint32(os.Geteuid()) ||
		s.Threads < 1 || s.Umask < 0 || len(s.NSpid) < 1 || s.NSpid[0] != s.Pid {
		t.Errorf("implausible status of self: %+v", s)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	ts, err := ReadTaskStatus(0, tid)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Pid != tid || ts.Tgid != os.Getpid() || ts.State != 'R' {
		t.Errorf("status of thread %d: Pid %d, Tgid %d", tid, ts.Pid, ts.Tgid)
	}
	if _, err := ReadTaskStatus(0, 1<<30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status of a missing thread: %v, want ErrNotExist", err)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(readSeed(f, "status-sleep.txt"))
	f.Add([]byte(statusMin))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseStatus(b)
		checkFuzzErr(t, err)
	})
}
