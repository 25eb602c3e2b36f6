package restore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// maxTimerFillers bounds the timers a restore on a kernel without
// PR_TIMER_CREATE_RESTORE_IDS makes and deletes to reach a timer's id:
// two injected calls each, half a millisecond on a small VM.
const maxTimerFillers = 1 << 14

// inIDOrder makes timers in id order even where the kernel could take
// their ids (tests).
var inIDOrder bool

// restorePosixTimers makes the process's POSIX timers again under their
// dumped ids and arms them with the time they had left. It runs once the
// threads exist, since a timer may signal one (SIGEV_THREAD_ID); one that
// fires before the process resumes leaves its signal pending, as for any
// stopped process.
//
// Since Linux 6.17, PR_TIMER_CREATE_RESTORE_IDS makes timer_create take
// the id the caller wants from its timer_t. Before, a process numbers its
// timers 0, 1, 2... in the order they are made, never reusing one, so a
// restore makes them in id order and deletes the fillers that skip a gap.
//
// The overrun count of a timer's last expiry (timer_getoverrun) is in the
// image but no call sets it: it reads 0 until the timer expires again.
func (r *restorer) restorePosixTimers() error {
	timers := slices.Clone(r.c.cores[uint32(r.pid)].Tc.GetTimers().GetPosix())
	if len(timers) == 0 {
		return nil
	}
	slices.SortFunc(timers, func(a, b *pb.PosixTimerEntry) int { return cmp.Compare(a.GetItId(), b.GetItId()) })
	for i, t := range timers {
		if err := r.checkPosixTimer(t); err != nil {
			return err
		}
		if i > 0 && timers[i-1].GetItId() == t.GetItId() {
			return fmt.Errorf("%w: POSIX timer %d twice", ErrImage, t.GetItId())
		}
	}
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	byID := false
	if !inIDOrder {
		err := r.sys(unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0)
		switch {
		case err == nil:
			byID = true
		case errors.Is(err, unix.EINVAL):
			r.log.Info("no PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17): POSIX timers are made in id order")
		default:
			return fmt.Errorf("turn on PR_TIMER_CREATE_RESTORE_IDS: %w", err)
		}
	}
	next := uint32(0) // the id the kernel gives next, without byID
	for _, t := range timers {
		if byID {
			err = r.createPosixTimer(t, scratch)
		} else {
			err = r.reachPosixTimer(t, scratch, &next)
		}
		if err != nil {
			return err
		}
	}
	if byID {
		if err := r.sys(unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0); err != nil {
			return fmt.Errorf("turn off PR_TIMER_CREATE_RESTORE_IDS: %w", err)
		}
	}
	for _, t := range timers {
		if t.GetVsec() == 0 && t.GetVnsec() == 0 {
			continue // disarmed: an armed timer has at least 1 ns left
		}
		v := unix.ItimerSpec{
			Interval: unix.Timespec{Sec: int64(t.GetIsec()), Nsec: int64(t.GetInsec())},
			Value:    unix.Timespec{Sec: int64(t.GetVsec()), Nsec: int64(t.GetVnsec())},
		}
		if err := r.tr.WriteValue(scratch, v); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_TIMER_SETTIME, uint64(t.GetItId()), 0, scratch, 0); err != nil {
			return fmt.Errorf("arm POSIX timer %d: %w", t.GetItId(), err)
		}
	}
	r.log.Info("POSIX timers", "count", len(timers), "by id", byID)
	return nil
}

// checkPosixTimer refuses an entry the kernel would misread (times out
// of range, an id timer_t cannot hold) or that would let the process
// count the CPU time of another (a restore makes it as root).
func (r *restorer) checkPosixTimer(t *pb.PosixTimerEntry) error {
	const sec = 1 << 62
	if t.GetItId() > 1<<31-1 || t.GetInsec() >= 1e9 || t.GetVnsec() >= 1e9 || t.GetIsec() >= sec || t.GetVsec() >= sec {
		return fmt.Errorf("%w: POSIX timer %d: id or times out of range", ErrImage, t.GetItId())
	}
	c, ok := kernel.DecodeCPUClock(int32(t.GetClockId()))
	if ok && c.Pid != 0 && c.Pid != r.pid && !slices.Contains(r.c.threads, uint32(c.Pid)) {
		return fmt.Errorf("%w: POSIX timer %d counts the CPU time of %d, not of the process or one of its threads", ErrImage, t.GetItId(), c.Pid)
	}
	return nil
}

// createPosixTimer injects the timer_create that makes timer t; with
// PR_TIMER_CREATE_RESTORE_IDS on, the kernel takes its id from the
// timer_t at scratch, and otherwise writes the id it gave there.
func (r *restorer) createPosixTimer(t *pb.PosixTimerEntry, scratch uint64) error {
	ev := kernel.Sigevent{Value: t.GetSivalPtr(), Signo: int32(t.GetSiSigno()), Notify: int32(t.GetItSigevNotify()), Tid: t.GetNotifyThreadId()}
	id := int32(t.GetItId())
	if err := r.tr.WriteValue(scratch, ev); err != nil {
		return err
	}
	idAt := scratch + uint64(len(kernel.Encode(ev)))
	if err := r.tr.WriteValue(idAt, id); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_TIMER_CREATE, uint64(int64(int32(t.GetClockId()))), scratch, idAt); err != nil {
		return fmt.Errorf("create POSIX timer %d (clock %d): %w", id, int32(t.GetClockId()), err)
	}
	var got int32
	if err := r.tr.ReadValue(idAt, &got); err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("create POSIX timer %d: the kernel gave id %d", id, got)
	}
	return nil
}

// reachPosixTimer makes timer t on a kernel that numbers timers in order,
// next being the id it gives next: fillers take the ids below t's, each
// deleted at once.
func (r *restorer) reachPosixTimer(t *pb.PosixTimerEntry, scratch uint64, next *uint32) error {
	want := t.GetItId()
	if want-*next > maxTimerFillers {
		return fmt.Errorf("%w: POSIX timer %d: reaching its id takes %d timers made and deleted, over %d (this kernel lacks PR_TIMER_CREATE_RESTORE_IDS)",
			ErrUnsupported, want, want-*next, maxTimerFillers)
	}
	for *next < want {
		// No sigevent: a timer that would signal, but is never armed.
		id, err := r.tr.Syscall(r.pid, unix.SYS_TIMER_CREATE, unix.CLOCK_MONOTONIC, 0, scratch)
		if err != nil {
			return fmt.Errorf("make filler timers up to id %d: %w", want, err)
		}
		var got int32
		if err := r.tr.ReadValue(scratch, &got); err != nil {
			return err
		}
		if id != 0 || got != int32(*next) {
			return fmt.Errorf("make filler timers up to id %d: the kernel gave id %d, want %d", want, got, *next)
		}
		if err := r.sys(unix.SYS_TIMER_DELETE, uint64(*next)); err != nil {
			return fmt.Errorf("delete filler timer %d: %w", *next, err)
		}
		*next++
	}
	if err := r.createPosixTimer(t, scratch); err != nil {
		return err
	}
	*next++
	return nil
}

// plainTimerSignal is a copy of siginfo info, whose size the caller
// checked, to queue again: a pending POSIX timer signal becomes a plain
// one, which older kernels do not take for the timer's own signal, or
// they would rearm the restored timer a second time.
func plainTimerSignal(info []byte) []byte {
	var si kernel.Siginfo
	copy(si[:], info)
	si.ClearTimerPrivate()
	return si[:]
}
