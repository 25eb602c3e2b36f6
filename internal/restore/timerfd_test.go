package restore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// What test/subjects/timerfd.c holds; the two must agree.
const (
	tfdFast   = 2 * time.Millisecond
	tfdSlow   = 3600 * time.Second
	tfdParked = 60 * time.Second
	tfdAbs    = 7200 * time.Second
	tfdWall   = 5400 * time.Second
	tfdSig40  = 40
)

// restoreDelay is how much longer TestRestoreTimerfd makes a restore
// take: more than the subject lets its deadlines be off by.
const restoreDelay = 300 * time.Millisecond

// dumpedFiles are a checkpoint's file entries by descriptor number.
func dumpedFiles(t *testing.T, c *checkpoint) map[int]*pb.FileEntry {
	t.Helper()
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]*pb.FileEntry{}
	for _, fd := range fds {
		m[int(fd.GetFd())] = c.im.files[fd.GetId()]
	}
	return m
}

// timerfdWant is what the images must hold of one of the timerfd
// subject's timerfds. Times left shrink while the subject runs: they are
// checked against what it armed, less a minute.
type timerfdWant struct {
	clock    int32
	settime  uint32
	armed    time.Duration // one-shot, running: what it was armed with
	interval time.Duration
	// ticks: at least, but exactly for the timers that do not run.
	ticks      uint64
	nonblock   bool
	notRunning bool
}

var timerfdWants = map[string]timerfdWant{
	// Without asking for its time first, the dump would see one
	// expiration: at least a tick's worth of periods since the start.
	"fast": {clock: unix.CLOCK_MONOTONIC, interval: tfdFast, ticks: 10, nonblock: true},
	"once": {clock: unix.CLOCK_BOOTTIME, ticks: 1, notRunning: true},
	"off":  {clock: unix.CLOCK_BOOTTIME, notRunning: true},
	// Disarmed, a period set: it stays disarmed.
	"parked": {clock: unix.CLOCK_MONOTONIC, interval: tfdParked, notRunning: true},
	"slow":   {clock: unix.CLOCK_BOOTTIME, armed: tfdSlow, interval: 2 * tfdSlow},
	"abs":    {clock: unix.CLOCK_MONOTONIC, settime: unix.TFD_TIMER_ABSTIME, armed: tfdAbs},
	"wall":   {clock: unix.CLOCK_REALTIME, settime: unix.TFD_TIMER_ABSTIME | unix.TFD_TIMER_CANCEL_ON_SET, armed: tfdWall},
}

// TestRestoreTimerfd dumps the timerfd subject, checks its timerfds and
// signalfds in the images, restores it, and checks that they come back
// as dumped and work: the timer it blocks in keeps ticking, expirations
// not read are still there, a periodic one goes on expiring (and an epoll
// reports it), disarmed ones stay disarmed, those on the clocks of the
// process's time namespace keep their deadlines on them however long the
// restore takes (the subject checks that), and a signal
// sent after the restore is read from the signalfd. Then the restored
// process goes through it all again.
func TestRestoreTimerfd(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"))}
	s.WaitTicks(t, 3)
	fd := func(k string) int { return int(s.ReadyUint(t, k)) }
	for hop := 1; hop <= 2; hop++ {
		c := dumpAndReap(t, s)
		dumped := checkDumpedTimerfds(t, s, c)
		if t.Failed() {
			t.FailNow()
		}

		// A restore that takes its time: the process's clocks go on
		// meanwhile, and its timers must keep their deadlines on them.
		slowed := false
		_, log := restoreSubject(t, s, c, restore.Options{Progress: func(_, _ uint64) {
			if !slowed {
				slowed = true
				time.Sleep(restoreDelay)
			}
		}})
		s.WaitTicks(t, 3)
		for k, w := range timerfdWants {
			info, err := proc.ReadFdinfo(s.Pid, fd(k))
			if err != nil {
				t.Fatal(err)
			}
			got, err := info.Timerfd()
			if err != nil {
				t.Fatal(err)
			}
			d := dumped[k]
			ok := got.Clockid == d.Clockid && got.SettimeFlags == d.SettimeFlags && got.Interval == d.Interval
			switch {
			case w.notRunning:
				ok = ok && got.Ticks == d.Ticks && got.Value == 0
			case w.armed != 0:
				// The time left is what it was, less the restore on the
				// clocks that went on meanwhile (the subject checks the
				// deadlines), and this test.
				spent := restoreDelay
				if w.clock == unix.CLOCK_REALTIME {
					spent = 0
				}
				ok = ok && got.Ticks == 0 && got.Value <= d.Value-spent && got.Value > d.Value-10*time.Second
			default:
				ok = ok && got.Ticks >= d.Ticks
			}
			if !ok {
				t.Errorf("hop %d: %s: restored as %+v, dumped as %+v\nlog:\n%s", hop, k, got, d, log)
			}
		}

		// The unread periodic timer goes on expiring: each time it is
		// asked, it has counted more periods.
		fast := dupTimerfd(t, s.Pid, fd("fast"))
		n := fast.ticks(t)
		time.Sleep(10 * tfdFast)
		if m := fast.ticks(t); m <= n || n < dumped["fast"].Ticks {
			t.Errorf("hop %d: fast timerfd: %d expirations, then %d; dumped with %d", hop, n, m, dumped["fast"].Ticks)
		}
		unix.Close(fast.fd)

		if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		waitField(t, s, "sigs", func(v int) bool { return v == hop })
		s.WaitTicks(t, 3)
		for _, tk := range s.TickLines()[c.ticks:] {
			if tk.Fields["pid"] != fmt.Sprint(s.Pid) {
				t.Fatalf("tick %d after the restore says pid=%s, want %d", tk.N, tk.Fields["pid"], s.Pid)
			}
		}
	}
}

// checkDumpedTimerfds checks the timerfds and signalfds of a checkpoint
// of the timerfd subject, and returns the timerfds as the images hold
// them.
func checkDumpedTimerfds(t *testing.T, s *subject, c *checkpoint) map[string]proc.Timerfd {
	t.Helper()
	fd := func(k string) int { return int(s.ReadyUint(t, k)) }
	files := dumpedFiles(t, c)
	dumped := map[string]proc.Timerfd{}
	for k, w := range timerfdWants {
		f := files[fd(k)]
		e := f.GetTfd()
		if f.GetType() != pb.FdTypes_TIMERFD || e == nil {
			t.Errorf("%s (fd %d): %v entry, want TIMERFD", k, fd(k), f.GetType())
			continue
		}
		got := proc.Timerfd{
			Clockid: int32(e.GetClockid()), Ticks: e.GetTicks(), SettimeFlags: e.GetSettimeFlags(),
			Value:    time.Duration(e.GetVsec())*time.Second + time.Duration(e.GetVnsec()),
			Interval: time.Duration(e.GetIsec())*time.Second + time.Duration(e.GetInsec()),
		}
		dumped[k] = got
		ok := got.Clockid == w.clock && got.SettimeFlags == w.settime && got.Interval == w.interval &&
			(e.GetFlags()&unix.O_NONBLOCK != 0) == w.nonblock
		switch {
		case w.notRunning:
			ok = ok && got.Ticks == w.ticks && got.Value == 0
		case w.armed != 0:
			ok = ok && got.Ticks == 0 && got.Value <= w.armed && got.Value > w.armed-time.Minute
		default:
			ok = ok && got.Ticks >= w.ticks && got.Value > 0 && got.Value <= w.interval
		}
		if !ok {
			t.Errorf("%s: dumped as %+v (flags %#o), want %+v", k, got, e.GetFlags(), w)
		}
	}
	for _, tc := range []struct {
		name string
		mask uint64
		flag uint32
	}{
		{"sfd", 1 << (unix.SIGUSR1 - 1), unix.O_NONBLOCK},
		{"sfd2", 1<<(unix.SIGUSR2-1) | 1<<(tfdSig40-1), 0},
	} {
		f := files[fd(tc.name)]
		if f.GetType() != pb.FdTypes_SIGNALFD || f.GetSgfd().GetSigmask() != tc.mask ||
			f.GetSgfd().GetFlags() != unix.O_RDWR|tc.flag {
			t.Errorf("%s: dumped as %v, want SIGNALFD of mask %#x, flags %#o", tc.name, f, tc.mask, unix.O_RDWR|tc.flag)
		}
	}
	return dumped
}

// timerfdDup is the test's own duplicate of a timerfd of the subject.
type timerfdDup struct{ fd, pid, target int }

// dupTimerfd duplicates descriptor fd of pid into the test; the caller
// closes it.
func dupTimerfd(t *testing.T, pid, fd int) timerfdDup {
	t.Helper()
	dup, err := kernel.Getfd(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	return timerfdDup{dup, pid, fd}
}

// ticks counts the periods since the timer last expired (timerfd_gettime)
// and returns the expirations it holds.
func (d timerfdDup) ticks(t *testing.T) uint64 {
	t.Helper()
	var cur unix.ItimerSpec
	if err := unix.TimerfdGettime(d.fd, &cur); err != nil {
		t.Fatal(err)
	}
	info, err := proc.ReadFdinfo(d.pid, d.target)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := info.Timerfd()
	if err != nil {
		t.Fatal(err)
	}
	return tf.Ticks
}

// TestRestoreBadTimerfdImages restores checkpoints of the timerfd subject
// whose timerfds or signalfds are broken.
func TestRestoreBadTimerfdImages(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	restoreBrokenFiles(t, s, c, []brokenFile{
		{name: "timerfd without its entry", fd: "slow", image: true, want: []string{"TIMERFD without"},
			edit: func(f *pb.FileEntry) { f.Entry = nil }},
		{name: "timerfd on a CPU clock", fd: "off", image: true, want: []string{"clock 2"},
			edit: func(f *pb.FileEntry) { f.GetTfd().Clockid = unix.CLOCK_PROCESS_CPUTIME_ID }},
		{name: "timerfd settime flags", fd: "abs", image: true, want: []string{"settime flags 0x5"},
			edit: func(f *pb.FileEntry) { f.GetTfd().SettimeFlags = 5 }},
		{name: "timerfd nanoseconds", fd: "fast", image: true, want: []string{"out of range"},
			edit: func(f *pb.FileEntry) { f.GetTfd().Insec = 1e9 }},
		{name: "timerfd time too long", fd: "slow", image: true, want: []string{"out of range"},
			edit: func(f *pb.FileEntry) { f.GetTfd().Vsec = 1 << 62 }},
		{name: "signalfd without its entry", fd: "sfd", image: true, want: []string{"SIGNALFD without"},
			edit: func(f *pb.FileEntry) { f.Entry = nil }},
	})
}

// TestRestoreTimerfdDue restores the timerfd subject with timers that
// expire a microsecond after the dump: by the time the restore arms
// them, they are due. Their expirations are counted at once (never
// overwritten by those not read, set afterwards). (TestRestoreTimerfd's
// periodic timer is due after its slowed restore.)
func TestRestoreTimerfdDue(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
	const ticks = 5
	due := *c
	due.dir = editedFiles(t, c, map[uint32]func(*pb.FileEntry){
		// Its expiration not read, on CLOCK_BOOTTIME, which went on from
		// the dump while the process was restored.
		fd("once"): func(f *pb.FileEntry) { f.GetTfd().Vsec, f.GetTfd().Vnsec = 0, 1000 },
		// Absolute on CLOCK_REALTIME: the time left counts from the
		// restore, and is less than the time arming takes.
		fd("wall"): func(f *pb.FileEntry) {
			f.GetTfd().Ticks, f.GetTfd().Vsec, f.GetTfd().Vnsec = ticks, 0, 1000
		},
	})
	_, log := restoreSubject(t, s, &due, restore.Options{})
	s.WaitTicks(t, 3)
	for _, tc := range []struct {
		name         string
		ticks        uint64
		settimeFlags uint32
	}{
		{"once", 2, 0},
		{"wall", ticks + 1, unix.TFD_TIMER_ABSTIME | unix.TFD_TIMER_CANCEL_ON_SET},
	} {
		info, err := proc.ReadFdinfo(s.Pid, int(fd(tc.name)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := info.Timerfd()
		if err != nil {
			t.Fatal(err)
		}
		if want := (proc.Timerfd{Clockid: got.Clockid, Ticks: tc.ticks, SettimeFlags: tc.settimeFlags}); got != want {
			t.Errorf("%s: restored as %+v, want %+v: expired, disarmed\nlog:\n%s", tc.name, got, want, log)
		}
	}
}

// TestRestoreTimerfdTree restores the timerfd subject with a child that
// shares its timerfds and signalfds: each is one open file description of
// both processes again, and the child reads the signals sent to it, after
// the restore as before, from the signalfd its parent made.
func TestRestoreTimerfdTree(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "timerfd.c"), "child")}
	s.WaitTicks(t, 3)
	kid := int(s.ReadyUint(t, "child"))
	signalChild := func(got int) {
		t.Helper()
		if err := unix.Kill(kid, unix.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("child pid=%d got=%d\n", kid, got)
		deadline := time.Now().Add(testutil.SubjectTimeout)
		for !strings.Contains(s.Output(), line) {
			if time.Now().After(deadline) {
				t.Fatalf("the child never printed %q:\n%s", line, s.Output())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	signalChild(1)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(kid); err != nil {
		t.Fatal(err)
	}
	st, _ := restoreSubject(t, s, c, restore.Options{})
	if st.Processes != 2 {
		t.Errorf("restored %d processes, want 2", st.Processes)
	}
	for _, k := range []string{"clock", "fast", "once", "slow", "abs", "wall", "ep", "sfd", "sfd2"} {
		fd := int(s.ReadyUint(t, k))
		if same, err := kernel.SameFile(s.Pid, fd, kid, fd); err != nil || !same {
			t.Errorf("%s: fd %d of the parent and the child: same open file description %v (%v), want true", k, fd, same, err)
		}
	}
	signalChild(2)
	s.WaitTicks(t, 3)
}
