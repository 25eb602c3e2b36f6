package dump

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// dumpPosixTimers records the process's POSIX timers (timer_create): what
// /proc says of each, and its time left, interval and overrun, which only
// the process can ask (injected timer_gettime and timer_getoverrun).
func (d *dumper) dumpPosixTimers(scratch uint64) ([]*pb.PosixTimerEntry, error) {
	// A process may have turned PR_TIMER_CREATE_RESTORE_IDS on (a
	// restorer of its own): images have no field for it.
	on, err := d.tr.Syscall(d.view, unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0)
	switch {
	case errors.Is(err, unix.EINVAL): // before Linux 6.17
	case err != nil:
		return nil, fmt.Errorf("get PR_TIMER_CREATE_RESTORE_IDS: %w", err)
	case on != 0:
		return nil, fmt.Errorf("%w: PR_TIMER_CREATE_RESTORE_IDS is on (CRIU's images have no field for it)", ErrUnsupported)
	}
	timers, err := proc.ReadPosixTimers(d.view)
	if err != nil {
		return nil, err
	}
	threads := d.tr.Threads()
	var out []*pb.PosixTimerEntry
	for _, t := range timers {
		if err := d.checkPosixTimer(t, threads); err != nil {
			return nil, fmt.Errorf("%w: POSIX timer %d: %w", ErrUnsupported, t.ID, err)
		}
		if _, err := d.tr.Syscall(d.view, unix.SYS_TIMER_GETTIME, uint64(t.ID), scratch); err != nil {
			return nil, fmt.Errorf("get time of POSIX timer %d: %w", t.ID, err)
		}
		var v unix.ItimerSpec
		if err := d.tr.ReadValue(scratch, &v); err != nil {
			return nil, err
		}
		overrun, err := d.tr.Syscall(d.view, unix.SYS_TIMER_GETOVERRUN, uint64(t.ID))
		if err != nil {
			return nil, fmt.Errorf("get overrun of POSIX timer %d: %w", t.ID, err)
		}
		e := &pb.PosixTimerEntry{
			ItId:          uint32(t.ID),
			ClockId:       uint32(t.ClockID),
			SiSigno:       uint32(t.Signo),
			ItSigevNotify: sigevNotify(t),
			SivalPtr:      t.Value,
			Overrun:       uint32(overrun),
			Isec:          uint64(v.Interval.Sec),
			Insec:         uint64(v.Interval.Nsec),
			Vsec:          uint64(v.Value.Sec),
			Vnsec:         uint64(v.Value.Nsec),
		}
		if t.ToThread {
			e.NotifyThreadId = pb.Int32(int32(t.NotifyPid))
		}
		d.log.Debug("POSIX timer", "id", t.ID, "clock", t.ClockID, "signal", t.Signo, "notify", t.Notify,
			"thread", e.NotifyThreadId, "value", v.Value, "interval", v.Interval, "overrun", overrun)
		out = append(out, e)
	}
	// In id order, the order a restore on a kernel without
	// PR_TIMER_CREATE_RESTORE_IDS must create them in.
	slices.SortFunc(out, func(a, b *pb.PosixTimerEntry) int { return cmp.Compare(a.GetItId(), b.GetItId()) })
	return out, nil
}

// sigevNotify is a timer's sigev_notify as CRIU records it:
// SIGEV_THREAD_ID alone for a signal to a thread.
func sigevNotify(t proc.PosixTimer) uint32 {
	switch {
	case t.ToThread:
		return kernel.SigevThreadID
	case t.Notify == "none":
		return kernel.SigevNone
	case t.Notify == "thread":
		return kernel.SigevThread
	}
	return kernel.SigevSignal
}

// checkPosixTimer refuses a timer a restore could not make the same: one
// that notifies a thread or process other than the target's, or counts
// the time of one, or of a thread it cannot name (a thread CPU-time clock
// made as the caller's: the kernel does not say which thread).
func (d *dumper) checkPosixTimer(t proc.PosixTimer, threads []int) error {
	if t.ToThread && !slices.Contains(threads, t.NotifyPid) {
		return fmt.Errorf("it signals thread %d, not one of the process's", t.NotifyPid)
	}
	if !t.ToThread && t.NotifyPid != d.pid {
		return fmt.Errorf("it notifies process %d", t.NotifyPid)
	}
	c, ok := kernel.DecodeCPUClock(t.ClockID)
	switch {
	case !ok && !slices.Contains(timerClocks, t.ClockID):
		return fmt.Errorf("clock %d", t.ClockID)
	case !ok:
		return nil
	case c.Thread && c.Pid == 0:
		return fmt.Errorf("it counts the CPU time of the thread that made it (CLOCK_THREAD_CPUTIME_ID), which no file names")
	case c.Thread && !slices.Contains(threads, c.Pid):
		return fmt.Errorf("it counts the CPU time of thread %d, not one of the process's", c.Pid)
	case !c.Thread && c.Pid != 0 && c.Pid != d.pid:
		return fmt.Errorf("it counts the CPU time of process %d", c.Pid)
	}
	return nil
}

// timerClocks are the clocks a POSIX timer may run on that are not
// CPU-time clocks.
var timerClocks = []int32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME,
	unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM, unix.CLOCK_TAI}
