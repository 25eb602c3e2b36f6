package files

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// timerfdKind is a timerfd: its clock, the time left until it expires,
// its period, and the expirations not read yet.
//
// The images hold the time left, as CRIU's do, and a restore arms the
// timer with it. In the time namespace a restore makes, CLOCK_MONOTONIC
// and CLOCK_BOOTTIME go on from the dump, so a timer on them expires at
// the very time it would have, relative or absolute
// (TFD_TIMER_ABSTIME, kept: the deadline is the process's clock plus the
// time left). CLOCK_REALTIME is not namespaced: a timer on it expires
// the time left after the restore, as the process's other timers do, and
// an absolute one therefore as much later as the process was away.
// TFD_TIMER_CANCEL_ON_SET is kept for later settings of the clock; the
// jump of the wall clock across the restore cancels nothing.
type timerfdKind struct{}

// timerfdTries is how many times a dump asks a running timer for its time
// before it gives up on one that keeps expiring meanwhile.
const timerfdTries = 100

func (timerfdKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_TIMERFD }

func (timerfdKind) claims(d *desc) bool { return d.link == "anon_inode:[timerfd]" }

func (timerfdKind) dump(t *Table, d *desc) (uint32, error) {
	tf, err := readTimerfd(t.pid, d.fd)
	if err != nil {
		return 0, err
	}
	id := t.nextID()
	return t.add(&fdinfo.FileEntry{
		Type: fdinfo.FdTypes_TIMERFD.Enum(), Id: proto.Uint32(id),
		Tfd: &timerfd.TimerfdEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(statusFlags(d.info)), Fown: zeroFown(),
			Clockid: proto.Uint32(uint32(tf.Clockid)), Ticks: proto.Uint64(tf.Ticks), SettimeFlags: proto.Uint32(tf.SettimeFlags),
			Vsec: proto.Uint64(uint64(tf.Value / time.Second)), Vnsec: proto.Uint64(uint64(tf.Value % time.Second)),
			Isec: proto.Uint64(uint64(tf.Interval / time.Second)), Insec: proto.Uint64(uint64(tf.Interval % time.Second)),
		},
	}), nil
}

// readTimerfd reads the timerfd at descriptor fd of process pid. A
// periodic timer that expired counts one expiration and has no time left
// until it is read or asked for its time: only then does the kernel count
// the periods since and run it again. So the dump asks first, through a
// duplicate (timerfd_gettime changes nothing the process could tell), and
// then reads fdinfo. A periodic timer with no time left there expired in
// between, and is asked again; unless it never counts an expiration more:
// then it is disarmed, its period set for a later arming.
func readTimerfd(pid, fd int) (proc.Timerfd, error) {
	dup, err := Getfd(pid, fd)
	if err != nil {
		return proc.Timerfd{}, err
	}
	defer unix.Close(dup)
	var last proc.Timerfd
	running := false
	for i := range timerfdTries {
		var cur unix.ItimerSpec
		if err := unix.TimerfdGettime(dup, &cur); err != nil {
			return proc.Timerfd{}, fmt.Errorf("timerfd_gettime fd %d of pid %d: %w", fd, pid, err)
		}
		info, err := proc.ReadFdinfo(pid, fd)
		if err != nil {
			return proc.Timerfd{}, err
		}
		tf, err := info.Timerfd()
		if err != nil {
			return proc.Timerfd{}, fmt.Errorf("read timerfd fd %d: %w", fd, err)
		}
		if tf.Value != 0 || tf.Interval == 0 {
			return tf, nil
		}
		running = running || i > 0 && tf.Ticks != last.Ticks
		last = tf
	}
	if !running {
		return last, nil
	}
	return proc.Timerfd{}, fmt.Errorf("%w: timerfd fd %d, every %v, expires again each time it is read", ErrUnsupported, fd, last.Interval)
}

// timerfdClocks are the clocks timerfd_create takes.
var timerfdClocks = []uint32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM}

func (timerfdKind) check(s *Set, f *fdinfo.FileEntry) error {
	e := f.Tfd
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

// timerfdMargin is how far ahead of a restored timer's next expiration
// its expirations not read are set, at first; see open.
const timerfdMargin = time.Millisecond

// open makes a timerfd in the process, armed with the time left and
// period, holding the expirations not read. Those can only be set once
// the timer is armed, which clears them, and setting them overwrites an
// expiration in between. So the expirations due within a margin are
// counted at once, the timer armed for the one after (a one-shot stays
// disarmed), and fdinfo must then show it has not expired since; else it
// is armed again, with a wider margin. An expiration can then come up to
// the margin early, never be lost.
func (timerfdKind) open(r *Restorer, f *fdinfo.FileEntry) (uint64, error) {
	e := f.Tfd
	flags := uint64(unix.TFD_CLOEXEC)
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.TFD_NONBLOCK
	}
	n, err := r.tr.Syscall(r.pid, unix.SYS_TIMERFD_CREATE, uint64(e.GetClockid()), flags)
	if err != nil {
		return 0, fmt.Errorf("make timerfd on clock %d: %w", e.GetClockid(), err)
	}
	left := time.Duration(e.GetVsec())*time.Second + time.Duration(e.GetVnsec())
	interval := time.Duration(e.GetIsec())*time.Second + time.Duration(e.GetInsec())
	for margin := timerfdMargin; ; margin *= 2 {
		value, ticks := left, e.GetTicks()
		if ticks != 0 && left != 0 && left < margin {
			if interval == 0 {
				value, ticks = 0, ticks+1
			} else {
				due := (margin - left + interval - 1) / interval
				value, ticks = left+due*interval, ticks+uint64(due)
				if value < left { // past the largest time the kernel keeps
					value = math.MaxInt64
				}
			}
		}
		if err := armTimerfd(r, n, e, value, interval); err != nil {
			return 0, err
		}
		if ticks != 0 {
			if err := setTimerfdTicks(r, n, ticks); err != nil {
				return 0, err
			}
		}
		if ticks == 0 || value == 0 {
			break // nothing ran between
		}
		info, err := proc.ReadFdinfo(r.pid, int(n))
		if err != nil {
			return 0, err
		}
		tf, err := info.Timerfd()
		if err != nil {
			return 0, fmt.Errorf("read timerfd %d: %w", n, err)
		}
		if tf.Value != 0 {
			break
		}
		if margin > time.Second {
			return 0, fmt.Errorf("timerfd %d expired before its expirations could be set, %v ahead", n, margin)
		}
	}
	return r.lift(n)
}

// armTimerfd arms timerfd n of the process for entry e, with the time
// left value and period interval, or leaves it disarmed.
func armTimerfd(r *Restorer, n uint64, e *timerfd.TimerfdEntry, value, interval time.Duration) error {
	spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(interval.Nanoseconds()), Value: unix.NsecToTimespec(value.Nanoseconds())}
	scratch, err := r.tr.Scratch(r.pid)
	if err != nil {
		return err
	}
	// The deadline of an absolute timer is the process's own clock (in
	// its time namespace) plus the time left.
	if e.GetSettimeFlags()&unix.TFD_TIMER_ABSTIME != 0 && value != 0 {
		if err := r.sys(unix.SYS_CLOCK_GETTIME, uint64(e.GetClockid()), scratch); err != nil {
			return fmt.Errorf("read clock %d: %w", e.GetClockid(), err)
		}
		var now unix.Timespec
		if err := r.tr.ReadValue(scratch, &now); err != nil {
			return err
		}
		// Past the largest time the kernel keeps is never, as for it.
		deadline := int64(math.MaxInt64)
		if left := value.Nanoseconds(); left <= deadline-now.Nano() {
			deadline = now.Nano() + left
		}
		spec.Value = unix.NsecToTimespec(deadline)
	}
	// A timer as made is disarmed, without period or flags.
	if spec == (unix.ItimerSpec{}) && e.GetSettimeFlags() == 0 {
		return nil
	}
	if err := r.tr.WriteValue(scratch, spec); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_TIMERFD_SETTIME, n, uint64(e.GetSettimeFlags()), scratch, 0); err != nil {
		return fmt.Errorf("arm timerfd %d (flags %#x, value %d.%09d s, interval %d.%09d s): %w",
			n, e.GetSettimeFlags(), spec.Value.Sec, spec.Value.Nsec, spec.Interval.Sec, spec.Interval.Nsec, err)
	}
	return nil
}

// setTimerfdTicks sets the expirations timerfd n of the process holds.
func setTimerfdTicks(r *Restorer, n, ticks uint64) error {
	scratch, err := r.tr.Scratch(r.pid)
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
