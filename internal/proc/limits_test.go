package proc

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseLimits(t *testing.T) {
	const inf = RlimInfinity
	want := Limits{
		unix.RLIMIT_CPU:        {inf, inf},
		unix.RLIMIT_FSIZE:      {inf, inf},
		unix.RLIMIT_DATA:       {inf, inf},
		unix.RLIMIT_STACK:      {8388608, inf},
		unix.RLIMIT_CORE:       {0, inf},
		unix.RLIMIT_RSS:        {inf, inf},
		unix.RLIMIT_NPROC:      {96364, 96364},
		unix.RLIMIT_NOFILE:     {20000, 20000},
		unix.RLIMIT_MEMLOCK:    {8388608, 8388608},
		unix.RLIMIT_AS:         {inf, inf},
		unix.RLIMIT_LOCKS:      {inf, inf},
		unix.RLIMIT_SIGPENDING: {96364, 96364},
		unix.RLIMIT_MSGQUEUE:   {819200, 819200},
		unix.RLIMIT_NICE:       {0, 0},
		unix.RLIMIT_RTPRIO:     {0, 0},
		unix.RLIMIT_RTTIME:     {inf, inf},
	}
	got, err := ParseLimits(readSeed(t, "limits-sleep.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParseLimitsErrors(t *testing.T) {
	capture := string(readSeed(t, "limits-sleep.txt"))
	header, _, _ := strings.Cut(capture, "\n")
	for _, in := range []string{
		"",
		header + "\n",
		capture[len(header)+1:],
		capture + "\n",
		capture + "Max cpu time              0                    0                    seconds\n",
		capture + "Max widgets               0                    0                    widgets\n",
		strings.Replace(capture, "Soft Limit", "Soft", 1),
		strings.Replace(capture, "Max cpu time              unlimited", "Max cpu time              unlimite", 1),
		strings.Replace(capture, "8388608 ", "-8388608", 1),
		strings.Replace(capture, "8388608 ", "18446744073709551616", 1),
		strings.Replace(capture, "seconds", "bytes  ", 1),
		strings.Replace(capture, "seconds", "       ", 1),
		strings.Replace(capture, "     us", "us   us", 1),
		strings.Replace(capture, "Max nice priority         0                    0", "Max nice priority         0                    0 x", 1),
		strings.Replace(capture, "Max file size ", "Max file sizes", 1),
	} {
		if l, err := ParseLimits([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseLimits(%q) = %v, %v; want ErrSyntax", in, l, err)
		}
	}
}

// TestReadLimitsSelf compares with getrlimit, for every resource.
func TestReadLimitsSelf(t *testing.T) {
	l, err := ReadLimits(0)
	if err != nil {
		t.Fatal(err)
	}
	for r, got := range l {
		var want unix.Rlimit
		if err := unix.Getrlimit(r, &want); err != nil {
			t.Fatal(err)
		}
		if got.Soft != want.Cur || got.Hard != want.Max {
			t.Errorf("resource %d (%s): %+v, getrlimit says %+v", r, limitNames[r].name, got, want)
		}
	}
}

func FuzzParseLimits(f *testing.F) {
	f.Add(readSeed(f, "limits-sleep.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseLimits(b)
		checkFuzzErr(t, err)
	})
}
