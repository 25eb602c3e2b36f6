package dump

import (
	"cmp"
	"encoding/binary"
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
// the process can tell (injected timer_gettime and timer_getoverrun, in
// batches). restoreIDs is whether it turned PR_TIMER_CREATE_RESTORE_IDS
// on.
func (d *dumper) dumpPosixTimers(restoreIDs answer) ([]*pb.PosixTimerEntry, error) {
	// A process may have turned PR_TIMER_CREATE_RESTORE_IDS on (a
	// restorer of its own): images have no field for it.
	switch {
	case errors.Is(restoreIDs.err, unix.EINVAL): // before Linux 6.17
	case restoreIDs.err != nil:
		return nil, restoreIDs.err
	case restoreIDs.v != 0:
		return nil, fmt.Errorf("%w: PR_TIMER_CREATE_RESTORE_IDS is on (CRIU's images have no field for it)", ErrUnsupported)
	}
	timers, err := proc.ReadPosixTimers(d.view)
	if err != nil {
		return nil, err
	}
	threads := d.traced
	for _, t := range timers {
		if err := d.checkPosixTimer(t, threads); err != nil {
			return nil, fmt.Errorf("%w: POSIX timer %d: %w", ErrUnsupported, t.ID, err)
		}
	}
	var out []*pb.PosixTimerEntry
	size := uint64(binary.Size(unix.ItimerSpec{}))
	for len(timers) > 0 {
		a, err := d.newAsks(d.view)
		if err != nil {
			return nil, err
		}
		var batch []proc.PosixTimer
		var values []uint64
		var overruns []int
		for ; len(timers) > 0 && a.room(size); timers = timers[1:] {
			t := timers[0]
			batch = append(batch, t)
			values = append(values, a.buf(size))
			a.ask(fmt.Sprintf("time of POSIX timer %d", t.ID), false, unix.SYS_TIMER_GETTIME, uint64(t.ID), values[len(values)-1])
			overruns = append(overruns, a.ask(fmt.Sprintf("overrun of POSIX timer %d", t.ID), false, unix.SYS_TIMER_GETOVERRUN, uint64(t.ID)))
		}
		if err := a.run(); err != nil {
			return nil, err
		}
		for i, t := range batch {
			var v unix.ItimerSpec
			if err := a.value(values[i], &v); err != nil {
				return nil, err
			}
			overrun, err := a.ret(overruns[i])
			if err != nil {
				return nil, err
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
