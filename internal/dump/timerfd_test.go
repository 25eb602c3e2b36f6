package dump_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpTimerfd dumps the timerfd subject, which runs on with its own
// checks passing, and checks that crit, an independent decoder, reads
// its timerfds and signalfds as cryo wrote them, a periodic timer's
// unread expirations all counted.
func TestDumpTimerfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"))
	s.WaitTicks(t, 3)
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 5)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	crit := critFiles(t, d.dir)
	for _, k := range []string{"clock", "fast", "once", "off", "parked", "slow", "abs", "wall"} {
		f := im.file(t, uint32(s.ReadyUint(t, k)))
		e := f.GetTfd()
		if f.GetType() != pb.FdTypes_TIMERFD || e == nil {
			t.Errorf("%s: %v entry, want TIMERFD", k, f.GetType())
			continue
		}
		want := &critTimerfd{Flags: e.GetFlags(), Clockid: e.GetClockid(), Ticks: e.GetTicks(), SettimeFlags: e.GetSettimeFlags(),
			Vsec: e.GetVsec(), Vnsec: e.GetVnsec(), Isec: e.GetIsec(), Insec: e.GetInsec()}
		if diff := cmp.Diff(want, crit[f.GetId()].Tfd); diff != "" {
			t.Errorf("%s: crit decodes the timerfd as (-cryo +crit):\n%s", k, diff)
		}
		// Without asking it for its time first, fdinfo shows one
		// expiration however many periods went by.
		if k == "fast" && e.GetTicks() < 10 {
			t.Errorf("fast: %d expirations, want every 2 ms period since it started", e.GetTicks())
		}
	}
	for _, k := range []string{"sfd", "sfd2"} {
		f := im.file(t, uint32(s.ReadyUint(t, k)))
		got := crit[f.GetId()].Sgfd
		if f.GetType() != pb.FdTypes_SIGNALFD || got == nil || got.Sigmask != f.GetSgfd().GetSigmask() ||
			got.Flags != f.GetSgfd().GetFlags() {
			t.Errorf("%s: crit decodes the %v entry %v as %+v", k, f.GetType(), f, got)
		}
	}
	if t.Failed() {
		t.Logf("dump log:\n%s", d.log)
	}
}

// TestDumpTimerfdTooFast dumps the timerfd subject with a timer that
// expires every microsecond, again before its expirations can be read
// once counted: the dump refuses it, naming it, and the subject runs on.
func TestDumpTimerfdTooFast(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"), "1000")
	s.WaitTicks(t, 3)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "fd "+s.Ready["fast"], "timerfd", "expires again")
}
