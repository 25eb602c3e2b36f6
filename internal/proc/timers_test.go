package proc

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePosixTimers(t *testing.T) {
	got, err := ParsePosixTimers(readSeed(t, "timers-multi.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []PosixTimer{
		{ID: 4, Signo: 14, Notify: "signal", NotifyPid: 26219, ClockID: -6},
		{ID: 3, Signo: 14, Notify: "signal", NotifyPid: 26219, ClockID: 1},
		{ID: 2, Signo: 10, Value: 0xdeadbeefcafe, Notify: "signal", ToThread: true, NotifyPid: 26219, ClockID: 7},
		{ID: 0, Signo: 34, Value: 0xdeadbeefcafe, Notify: "none", NotifyPid: 26219, ClockID: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParsePosixTimers (-want +got):\n%s", diff)
	}
}

func TestParsePosixTimersBad(t *testing.T) {
	const ok = "ID: 1\nsignal: 14/0000000000000001\nnotify: signal/pid.7\nClockID: 0\n"
	if got, err := ParsePosixTimers([]byte(ok)); err != nil || len(got) != 1 {
		t.Fatalf("ParsePosixTimers(%q) = %v, %v", ok, got, err)
	}
	if got, err := ParsePosixTimers(nil); err != nil || len(got) != 0 {
		t.Fatalf("ParsePosixTimers(empty) = %v, %v", got, err)
	}
	for _, in := range []string{
		"ID: 1\nsignal: 14/0000000000000001\nnotify: signal/pid.7\n",
		"ID: 1\nnotify: signal/pid.7\nsignal: 14/1\nClockID: 0\n",
		"ID: -1\nsignal: 14/1\nnotify: signal/pid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14\nnotify: signal/pid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14/xyz\nnotify: signal/pid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14/1\nnotify: none/tid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14/1\nnotify: other/pid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14/1\nnotify: signal/xid.7\nClockID: 0\n",
		"ID: 1\nsignal: 14/1\nnotify: signal/pid7\nClockID: 0\n",
		"ID: 1\nsignal: 14/1\nnotify: signal/pid.7\nClockID: x\n",
		ok + ok,
	} {
		if got, err := ParsePosixTimers([]byte(in)); !checkFuzzErr(t, err) {
			t.Errorf("ParsePosixTimers(%q) = %v, want an error", in, got)
		}
	}
}

func TestReadPosixTimersSelf(t *testing.T) {
	if _, err := ReadPosixTimers(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func FuzzParsePosixTimers(f *testing.F) {
	f.Add(readSeed(f, "timers-multi.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		timers, err := ParsePosixTimers(b)
		if checkFuzzErr(t, err) {
			return
		}
		seen := map[int32]bool{}
		for _, tm := range timers {
			if tm.ID < 0 || seen[tm.ID] {
				t.Fatalf("ParsePosixTimers(%q): id %d negative or twice", b, tm.ID)
			}
			seen[tm.ID] = true
		}
	})
}
