package restore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestorePosixTimers restores a process with POSIX timers of every
// kind (test/subjects/posixtimers.c): each comes back under its id, on
// its clock, with its signal, value and thread, its interval and whether
// it is armed, the deleted id still free; the periodic ones keep firing,
// with the right si_value and si_timerid, the thread-directed one in its
// thread (the subject checks all that and prints FAIL otherwise). Both
// ways of getting the ids: PR_TIMER_CREATE_RESTORE_IDS, and the creation
// in id order of older kernels.
func TestRestorePosixTimers(t *testing.T) {
	testutil.RequireRoot(t)
	for _, inOrder := range []bool{false, true} {
		t.Run("in id order="+strconv.FormatBool(inOrder), func(t *testing.T) {
			*restore.InIDOrder = inOrder
			t.Cleanup(func() { *restore.InIDOrder = false })
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"))}
			s.WaitTicks(t, 3)
			before, err := proc.ReadPosixTimers(s.Pid)
			if err != nil {
				t.Fatal(err)
			}
			fired := func() (int, int) {
				last := s.LastTick()
				a, _ := strconv.Atoi(last["fired0"])
				b, _ := strconv.Atoi(last["fired2"])
				return a, b
			}
			// Twice: a restored process's timers are dumped as well.
			for round := 1; round <= 2; round++ {
				t.Logf("round %d", round)
				c := dumpAndReap(t, s)
				posix := c.im.cores[uint32(s.Pid)].Tc.GetTimers().GetPosix()
				var ids []uint32
				for _, p := range posix {
					ids = append(ids, p.GetItId())
				}
				if want := []uint32{0, 2, 3, 4, 5}; !cmp.Equal(ids, want) {
					t.Fatalf("dumped timer ids %v, want %v", ids, want)
				}
				_, log := restoreSubject(t, s, c, restore.Options{})
				if !strings.Contains(log.String(), fmt.Sprintf(`"by id"=%v`, !inOrder)) {
					t.Errorf("restore in id order %v, but its log says:\n%s", inOrder, log)
				}
				after, err := proc.ReadPosixTimers(s.Pid)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(byID(before), byID(after)); diff != "" {
					t.Errorf("timers after the restore (-before +after):\n%s", diff)
				}
				s.WaitTicks(t, 1)
				f0, f2 := fired()
				// 20 and 30 ms timers: a dozen ticks of 20 ms see both fire.
				s.WaitTicks(t, 12)
				if g0, g2 := fired(); g0 <= f0 || g2 <= f2 {
					t.Errorf("after the restore timers 0 and 2 fired %d and %d times, then %d and %d: want more", f0, f2, g0, g2)
				}
			}
		})
	}
}

// byID keys timers by id: /proc lists them in no set order.
func byID(ts []proc.PosixTimer) map[int32]proc.PosixTimer {
	m := map[int32]proc.PosixTimer{}
	for _, t := range ts {
		m[t.ID] = t
	}
	return m
}

// TestRestorePendingTimerSignal restores a process whose timer's signal
// is pending, blocked: it is pending again after the restore, and once
// unblocked it comes with the timer's si_code, si_value and si_timerid
// (the subject checks them), and the timer, periodic, goes on firing.
func TestRestorePendingTimerSignal(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"), "block")}
	s.WaitTicks(t, 3)
	rtmin := s.ReadyUint(t, "sigrtmin")
	pending := func() {
		t.Helper()
		st, err := proc.ReadStatus(s.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.ShdPnd&(1<<(rtmin-1)) == 0 {
			t.Fatalf("SIGRTMIN not pending: %#x", st.ShdPnd)
		}
	}
	pending()
	c := dumpAndReap(t, s)
	var timerSignals int
	for _, sig := range c.im.cores[uint32(s.Pid)].Tc.GetSignalsS().GetSignals() {
		var si kernel.Siginfo
		copy(si[:], sig.GetSiginfo())
		if si.Signo() == unix.Signal(rtmin) && si.Code() == kernel.SiTimer {
			timerSignals++
		}
	}
	if timerSignals != 1 {
		t.Fatalf("%d pending signals of timer 0 dumped, want 1", timerSignals)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2)
	pending()
	if got := s.LastTick()["fired0"]; got != "0" {
		t.Fatalf("timer 0 fired %s times while its signal was blocked", got)
	}
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, 12)
	if n, _ := strconv.Atoi(s.LastTick()["fired0"]); n < 3 {
		t.Errorf("timer 0 fired %d times in 12 ticks of 20 ms after SIGRTMIN was unblocked, want its pending signal and more", n)
	}
}

// TestRestorePosixTimerFarID restores a timer whose id lies far past the
// one before it: a restore that must make timers in id order refuses it,
// naming it, and leaves nothing behind; PR_TIMER_CREATE_RESTORE_IDS gives
// it its id at once.
func TestRestorePosixTimerFarID(t *testing.T) {
	testutil.RequireRoot(t)
	const far = 5 + 1<<14 + 1
	s, c := dumpEditTimer5(t, func(p *pb.PosixTimerEntry) { p.ItId = far })

	*restore.InIDOrder = true
	t.Cleanup(func() { *restore.InIDOrder = false })
	before := testutil.Children(t)
	log, buf := newLog()
	_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if err == nil {
		s.Restored()
		t.Fatal("restore of a timer 16385 ids past the one before succeeded in id order")
	}
	if !errors.Is(err, restore.ErrUnsupported) || !strings.Contains(err.Error(), ": threads: ") ||
		!strings.Contains(err.Error(), fmt.Sprintf("POSIX timer %d: ", far)) {
		t.Errorf("error %q, want ErrUnsupported in step threads naming timer %d\nlog:\n%s", err, far, buf)
	}
	checkNothingLeft(t, before, s.Pid)

	*restore.InIDOrder = false
	c.before = nil // timer 5 is another one now
	restoreSubject(t, s, c, restore.Options{})
	after, err := proc.ReadPosixTimers(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if m := byID(after); len(m) != 5 || m[far].ClockID != -6 {
		t.Errorf("timers after the restore %+v, want 5 with CLOCK_PROCESS_CPUTIME_ID's as %d", after, far)
	}
}

// TestRestorePosixTimerForeignClock: an image whose timer would count the
// CPU time of another process (init's) is refused, and nothing is left.
func TestRestorePosixTimerForeignClock(t *testing.T) {
	testutil.RequireRoot(t)
	initCPU := ^int32(1)<<3 | 2 // CPUCLOCK_SCHED of pid 1
	s, c := dumpEditTimer5(t, func(p *pb.PosixTimerEntry) { p.ClockId = uint32(initCPU) })
	before := testutil.Children(t)
	_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir})
	if err == nil {
		s.Restored()
		t.Fatal("restore of a timer on init's CPU-time clock succeeded")
	}
	if !errors.Is(err, restore.ErrImage) || !strings.Contains(err.Error(), "CPU time of 1,") {
		t.Errorf("error %q, want ErrImage naming pid 1", err)
	}
	checkNothingLeft(t, before, s.Pid)
}

// dumpEditTimer5 dumps test/subjects/posixtimers.c and edits its timer 5
// in the images.
func dumpEditTimer5(t *testing.T, edit func(*pb.PosixTimerEntry)) (*subject, *checkpoint) {
	t.Helper()
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"))}
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	core := pb.Clone(c.im.cores[uint32(s.Pid)])
	posix := core.GetTc().GetTimers().GetPosix()
	last := posix[len(posix)-1]
	if last.GetItId() != 5 {
		t.Fatalf("last timer %d, want 5", last.GetItId())
	}
	edit(last)
	rewriteImage(t, c.dir, image.Core, uint32(s.Pid), core)
	return s, c
}
