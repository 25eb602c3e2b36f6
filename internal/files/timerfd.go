package files

import (
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// timerfdKind is a timerfd: its clock, the time left until it expires,
// its period, and the expirations not read yet.
//
// The images hold the time left, as CRIU's do, as of when the dump read
// the process's clocks (timens.img). In the time namespace a restore
// makes, CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from those values, so a
// timer on them, relative or absolute, keeps its deadline on the
// process's clock: their value plus the time left. CLOCK_REALTIME is not
// namespaced: a timer on it expires the time left after the restore, as
// with CRIU, and an absolute one therefore as much later as the process
// was away.
// TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET are kept; the jump of the
// wall clock across the restore cancels nothing.
type timerfdKind struct{}

// timerfdTries is how many times a dump asks a running timer for its time
// before it gives up on one that keeps expiring meanwhile.
const timerfdTries = 100

func (timerfdKind) typ() pb.FdTypes { return pb.FdTypes_TIMERFD }

func (timerfdKind) claims(d *desc) bool { return d.link == "anon_inode:[timerfd]" }

// ClocksRead says when the dump read the process's clocks (timens.img).
// The time left of a running timer is then the time left at that moment,
// so that its deadline is that reading of its clock plus the time left.
func (t *Table) ClocksRead(at time.Time) { t.clocksRead = at }

func (timerfdKind) dump(t *Table, d *desc) (uint32, error) {
	tf, read, err := readTimerfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	if !t.clocksRead.IsZero() && tf.Value != 0 {
		// Read after the clocks, as the dump's steps go: its time left
		// then was longer, and the expirations since were not counted.
		tf.Value = addSat(tf.Value, max(read.Sub(t.clocksRead), 0))
		if tf.Interval != 0 && tf.Value > tf.Interval {
			since := min(uint64((tf.Value-1)/tf.Interval), tf.Ticks)
			tf.Value -= time.Duration(since) * tf.Interval
			tf.Ticks -= since
		}
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_TIMERFD, Id: id,
		Entry: &pb.TimerfdEntry{
			Id: id, Flags: statusFlags(d.info), Fown: &pb.FownEntry{},
			Clockid: uint32(tf.Clockid), Ticks: tf.Ticks, SettimeFlags: tf.SettimeFlags,
			Vsec: uint64(tf.Value / time.Second), Vnsec: uint64(tf.Value % time.Second),
			Isec: uint64(tf.Interval / time.Second), Insec: uint64(tf.Interval % time.Second),
		},
	}), nil
}

// readTimerfd reads the timerfd at descriptor fd of process pid, and
// says when it read its time left. A periodic timer that expired counts
// one expiration and has no time left until it is read or asked for its
// time: only then does the kernel count the periods since and run it
// again. So the dump asks first, through a
// duplicate (timerfd_gettime changes nothing the process could tell), and
// then reads fdinfo. A timer with no time left there that was running
// when asked expired in between, and is asked again; a periodic one that
// never counts an expiration more is not running: it is disarmed, its
// period set for a later arming.
func readTimerfd(pid, fd int) (proc.Timerfd, time.Time, error) {
	dup, err := kernel.Getfd(pid, fd)
	if err != nil {
		return proc.Timerfd{}, time.Time{}, err
	}
	defer unix.Close(dup)
	var last proc.Timerfd
	running := false
	for i := range timerfdTries {
		var cur unix.ItimerSpec
		if err := unix.TimerfdGettime(dup, &cur); err != nil {
			return proc.Timerfd{}, time.Time{}, fmt.Errorf("timerfd_gettime fd %d of pid %d: %w", fd, pid, err)
		}
		info, err := proc.ReadFdinfo(pid, fd)
		if err != nil {
			return proc.Timerfd{}, time.Time{}, err
		}
		read := time.Now()
		tf, err := info.Timerfd()
		if err != nil {
			return proc.Timerfd{}, time.Time{}, fmt.Errorf("read timerfd fd %d: %w", fd, err)
		}
		// A one-shot timer running when asked and expired since is read
		// again, once it has counted that expiration.
		if tf.Value != 0 || tf.Interval == 0 && cur.Value == (unix.Timespec{}) {
			return tf, read, nil
		}
		running = running || i > 0 && tf.Ticks != last.Ticks
		last = tf
	}
	if !running {
		return last, time.Time{}, nil // no time left to date
	}
	return proc.Timerfd{}, time.Time{}, fmt.Errorf("%w: timerfd fd %d, every %v, expires again each time it is read", ErrUnsupported, fd, last.Interval)
}

// timerfdClocks are the clocks timerfd_create takes.
var timerfdClocks = []uint32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM}

func (timerfdKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetTfd()
	switch {
	case e == nil:
		return imageErr("file %d: TIMERFD without a tfd entry", f.GetId())
	case !slices.Contains(timerfdClocks, e.GetClockid()):
		return imageErr("file %d: timerfd on clock %d, which timerfds cannot use", f.GetId(), e.GetClockid())
	case e.GetSettimeFlags()&^(unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET) != 0:
		return imageErr("file %d: timerfd settime flags %#x", f.GetId(), e.GetSettimeFlags())
	case !kernelTime(e.GetVsec(), e.GetVnsec()) || !kernelTime(e.GetIsec(), e.GetInsec()):
		return imageErr("file %d: timerfd time left (%d s, %d ns) or interval (%d s, %d ns) out of range",
			f.GetId(), e.GetVsec(), e.GetVnsec(), e.GetIsec(), e.GetInsec())
	}
	return nil
}

// kernelTime reports whether sec seconds and nsec nanoseconds are a time
// the kernel keeps a timer for: signed 64-bit nanoseconds.
func kernelTime(sec, nsec uint64) bool { return nsec < 1e9 && sec <= (math.MaxInt64-nsec)/1e9 }

// timerfdRestorer is what a restore knows of the process's clocks.
type timerfdRestorer struct {
	// atDump are the values at the dump of the clocks that went on from
	// there in the process's time namespace, by clock id.
	atDump map[uint32]time.Duration
}

// ClocksFromDump says that the process lives in a time namespace whose
// CLOCK_MONOTONIC and CLOCK_BOOTTIME went on from mono and boot, their
// values at the dump: its timers on them keep their deadlines.
func (r *Restorer) ClocksFromDump(mono, boot time.Duration) {
	r.atDump = map[uint32]time.Duration{unix.CLOCK_MONOTONIC: mono, unix.CLOCK_BOOTTIME: boot, unix.CLOCK_BOOTTIME_ALARM: boot}
}

// timerfdMargin is how far ahead of a restored timer's next expiration
// its expirations not read are set, at first; see open.
const timerfdMargin = time.Millisecond

// open makes a timerfd in the process, in its time namespace, armed and holding the expirations
// not read. On a clock that went on from the dump, its deadline is the
// clock's value at the dump plus the time left, which the restore's own
// time may have passed: the expirations due are then counted. On another
// clock it has the time left from now.
//
// The expirations not read can only be set once the timer is armed, which
// clears them, and setting them overwrites an expiration in between. So
// the expirations due within a margin are counted at once, the timer
// armed for the one after (a one-shot stays disarmed), and fdinfo must
// then show it has not expired since; else it is armed again, with a
// wider margin. An expiration can then come up to the margin early, never
// be lost.
func (timerfdKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetTfd()
	flags := uint64(0)
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.TFD_NONBLOCK
	}
	clock := e.GetClockid()
	n, err := r.tr.Syscall(r.pid, unix.SYS_TIMERFD_CREATE, uint64(clock), flags)
	if err != nil {
		return -1, fmt.Errorf("make timerfd on clock %d: %w", clock, err)
	}
	left := time.Duration(e.GetVsec())*time.Second + time.Duration(e.GetVnsec())
	interval := time.Duration(e.GetIsec())*time.Second + time.Duration(e.GetInsec())
	atDump, kept := r.atDump[clock]
	abs := e.GetSettimeFlags()&unix.TFD_TIMER_ABSTIME != 0
	for margin := timerfdMargin; ; margin *= 2 {
		var now time.Duration
		if left != 0 && (kept || abs) {
			if now, err = r.clock(clock); err != nil {
				return -1, err
			}
		}
		value, ticks := left, e.GetTicks()
		if left != 0 && kept {
			value = addSat(atDump, left) - now
		}
		if left != 0 && (value <= 0 || ticks != 0 && value < margin) {
			var due uint64
			value, due = dueWithin(value, interval, margin)
			ticks += due
		}
		spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(int64(interval)), Value: unix.NsecToTimespec(int64(value))}
		if abs && value != 0 {
			spec.Value = unix.NsecToTimespec(int64(addSat(now, value)))
		}
		// A timer as made is disarmed, without period or flags.
		if spec != (unix.ItimerSpec{}) || e.GetSettimeFlags() != 0 {
			if err := armTimerfd(r, n, e.GetSettimeFlags(), spec); err != nil {
				return -1, err
			}
		}
		if ticks != 0 {
			if err := setTimerfdTicks(r, n, ticks); err != nil {
				return -1, err
			}
		}
		if ticks == 0 || value == 0 {
			break // nothing ran between
		}
		info, err := proc.ReadFdinfo(r.pid, int(n))
		if err != nil {
			return -1, err
		}
		tf, err := info.Timerfd()
		if err != nil {
			return -1, fmt.Errorf("read timerfd %d: %w", n, err)
		}
		if tf.Value != 0 {
			break
		}
		if margin > time.Second {
			return -1, fmt.Errorf("timerfd %d expired before its expirations could be set, %v ahead", n, margin)
		}
	}
	return r.made(n)
}

// dueWithin counts the expirations within margin of a timer due in left
// (past if negative) with period interval, and returns the time left
// until the next one: none for a one-shot.
func dueWithin(left, interval, margin time.Duration) (time.Duration, uint64) {
	if interval == 0 {
		return 0, 1
	}
	due := (margin - left + interval - 1) / interval
	return addSat(left, due*interval), uint64(due)
}

// addSat adds b to a, both times the kernel keeps; past the largest one
// is never, as for the kernel.
func addSat(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// clock reads clock id in the process, in its time namespace.
func (r *Restorer) clock(id uint32) (time.Duration, error) {
	scratch, err := r.scratch()
	if err != nil {
		return 0, err
	}
	if err := r.sys(unix.SYS_CLOCK_GETTIME, uint64(id), scratch); err != nil {
		return 0, fmt.Errorf("read clock %d: %w", id, err)
	}
	var now unix.Timespec
	if err := r.tr.ReadValue(scratch, &now); err != nil {
		return 0, err
	}
	return time.Duration(now.Nano()), nil
}

// armTimerfd arms timerfd n of the process.
func armTimerfd(r *Restorer, n uint64, flags uint32, spec unix.ItimerSpec) error {
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	if err := r.tr.WriteValue(scratch, spec); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_TIMERFD_SETTIME, n, uint64(flags), scratch, 0); err != nil {
		return fmt.Errorf("arm timerfd %d (flags %#x, value %d.%09d s, interval %d.%09d s): %w",
			n, flags, spec.Value.Sec, spec.Value.Nsec, spec.Interval.Sec, spec.Interval.Nsec, err)
	}
	return nil
}

// setTimerfdTicks sets the expirations timerfd n of the process holds.
func setTimerfdTicks(r *Restorer, n, ticks uint64) error {
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	if err := r.tr.WriteValue(scratch, ticks); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_IOCTL, n, kernel.TimerfdSetTicksRequest, scratch); err != nil {
		return fmt.Errorf("set timerfd %d expirations to %d: %w", n, ticks, err)
	}
	return nil
}
