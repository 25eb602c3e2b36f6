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

// statTail is the 49 numbers after the state, 4 to 52, each its own number.
const statTail = "4 5 6 -7 8 9 10 11 12 13 14 15 -16 17 -18 -19 20 21 22 23 24 25 26 27 28 29 30 " +
	"31 32 33 34 35 36 37 -38 39 40 41 42 43 44 45 46 47 48 49 50 51 52"

var statNumbered = Stat{
	PPid: 4, Pgrp: 5, Session: 6, TtyNr: -7, TPgid: 8, Flags: 9,
	MinFlt: 10, CMinFlt: 11, MajFlt: 12, CMajFlt: 13, UTime: 14, STime: 15,
	CUTime: -16, CSTime: 17, Priority: -18, Nice: -19, NumThreads: 20,
	ItRealValue: 21, StartTime: 22, VSize: 23, RSS: 24, RSSLim: 25,
	StartCode: 26, EndCode: 27, StartStack: 28, KStkESP: 29, KStkEIP: 30,
	Signal: 31, Blocked: 32, SigIgnore: 33, SigCatch: 34, WChan: 35,
	NSwap: 36, CNSwap: 37, ExitSignal: -38, Processor: 39, RTPriority: 40,
	Policy: 41, DelayAcctBlkIOTicks: 42, GuestTime: 43, CGuestTime: 44,
	StartData: 45, EndData: 46, StartBrk: 47, ArgStart: 48, ArgEnd: 49,
	EnvStart: 50, EnvEnd: 51, ExitCode: 52,
}

func TestParseStat(t *testing.T) {
	withComm := func(pid int, comm string, state byte) Stat {
		s := statNumbered
		s.Pid, s.Comm, s.State = pid, comm, state
		return s
	}
	for _, tc := range []struct {
		in   string
		want Stat
	}{
		{
			in: string(readSeed(t, "stat-sleep.txt")),
			want: Stat{
				Pid: 13150, Comm: "x) (y z", State: 'S', PPid: 13147, Pgrp: 13145, Session: 8744,
				TPgid: -1, Flags: 4194304, MinFlt: 101, Priority: 20, NumThreads: 1,
				StartTime: 45096, VSize: 2990080, RSS: 408, RSSLim: RlimInfinity,
				StartCode: 94449309876224, EndCode: 94449309894153, StartStack: 140723056254512,
				WChan: 1, ExitSignal: 17, StartData: 94449309908240, EndData: 94449309909504,
				StartBrk: 94449801519104, ArgStart: 140723056257702, ArgEnd: 140723056257719,
				EnvStart: 140723056257719, EnvEnd: 140723056259051,
			},
		},
		{in: "1 (a) R " + statTail, want: withComm(1, "a", 'R')},
		{in: "2 () Z " + statTail + "\n", want: withComm(2, "", 'Z')},
		{in: "3 (a) b\n(c)) t " + statTail + " 53 54\n", want: withComm(3, "a) b\n(c)", 't')},
	} {
		got, err := ParseStat([]byte(tc.in))
		if err != nil {
			t.Errorf("ParseStat(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseStat(%q): (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"1 (a R " + statTail,
		"1 a) R " + statTail,
		"x (a) R " + statTail,
		"1 (a)R " + statTail,
		"1 (a) RR " + statTail,
		"1 (a)  R " + statTail,
		"1 (a) R " + statTail[:strings.LastIndexByte(statTail, ' ')],
		"1 (a) R " + statTail + " ",
		"1 (a) R " + statTail + "\n\n",
		"1 (a) R " + strings.Replace(statTail, "4 5", "4  5", 1),
		"1 (a) R " + strings.Replace(statTail, "-38", "x", 1),
		"1 (a) R " + strings.Replace(statTail, "9 10", "-9 10", 1),
		"1 (a) R " + strings.Replace(statTail, "22 23", "22 18446744073709551616", 1),
	} {
		if s, err := ParseStat([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseStat(%q) = %+v, %v; want ErrSyntax", in, s, err)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	s, err := ReadStat(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pid != os.Getpid() || s.PPid != os.Getppid() || s.NumThreads < 1 ||
		s.StartCode == 0 || s.StartBrk == 0 || s.ArgStart >= s.ArgEnd || s.EnvStart >= s.EnvEnd {
		t.Errorf("implausible stat of self: %+v", s)
	}
	// The process's state is its leader's; this thread is surely running.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	ts, err := ReadTaskStat(0, tid)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Pid != tid || ts.State != 'R' || ts.StartCode != s.StartCode {
		t.Errorf("stat of thread %d: %+v", tid, ts)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add(readSeed(f, "stat-sleep.txt"))
	f.Add([]byte("3 (a) b\n(c)) t " + statTail + " 53\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseStat(b)
		checkFuzzErr(t, err)
	})
}
