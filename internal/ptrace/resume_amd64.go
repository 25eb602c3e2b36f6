package ptrace

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// RestartRegs returns the registers to give Resume for a thread dumped with
// registers r: the same, unless the thread was stopped in a system call
// that would have restarted through restart_block.
//
// A thread stopped in an interrupted system call has its number in
// orig_rax and a restart code in rax (kernel.ErestartSys and the others).
// Resumed from a signal stop, the kernel restarts it: for -ERESTARTSYS,
// -ERESTARTNOINTR and -ERESTARTNOHAND it sets rax back to orig_rax and
// moves rip back over the syscall instruction, so that the call runs
// again with its arguments, or it returns EINTR if a signal handler runs
// first and the code says so. That holds in a restored process as well,
// pending signals included, so those registers stay as they are.
// -ERESTART_RESTARTBLOCK restarts through restart_syscall(2) and the
// thread's restart_block instead, kernel state that no restore brings back:
// the restored task's own restart_block answers (a nanosleep gets EINTR).
// RestartRegs turns that code into -ERESTARTNOHAND, which the kernel
// treats alike (EINTR if a handler runs) but restarts by re-issuing the
// call. An absolute sleep keeps its deadline so. A relative nanosleep or
// clock_nanosleep given a buffer for the time left had it written there
// when the dump stopped it: the call is re-issued with that buffer as its
// request, so that it sleeps what was left, not its full length again
// (glibc's sleep() passes one buffer as both). Without the buffer, and for
// poll and futex timeouts, the sleep starts again with its full length.
// A thread already in restart_syscall when stopped (its sleep had been
// interrupted before, by a stop signal) cannot say which call it restarts:
// it gets EINTR, with the time left in its buffer if it gave one.
func RestartRegs(r unix.PtraceRegs) unix.PtraceRegs {
	if int64(r.Orig_rax) < 0 || r.Rax != returned(kernel.ErestartRestartBlock) {
		return r
	}
	if s, ok := sleepOf(&r); ok {
		*s.req = s.left
	}
	r.Rax = returned(kernel.ErestartNoHand)
	return r
}

// sleep is a relative nanosleep or clock_nanosleep interrupted with
// -ERESTART_RESTARTBLOCK after writing its time left.
type sleep struct {
	clock int32   // unix.CLOCK_*
	req   *uint64 // the register holding the request
	left  uint64  // address of the time left (struct timespec)
}

// sleepOf returns the sleep that thread registers r were interrupted in,
// if they were.
func sleepOf(r *unix.PtraceRegs) (sleep, bool) {
	if int64(r.Orig_rax) < 0 || r.Rax != returned(kernel.ErestartRestartBlock) {
		return sleep{}, false
	}
	switch {
	case r.Orig_rax == unix.SYS_NANOSLEEP && r.Rsi != 0:
		// nanosleep(req, rem)
		return sleep{unix.CLOCK_MONOTONIC, &r.Rdi, r.Rsi}, true
	case r.Orig_rax == unix.SYS_CLOCK_NANOSLEEP && r.Rsi&unix.TIMER_ABSTIME == 0 && r.R10 != 0:
		// clock_nanosleep(clock, flags, req, rem)
		return sleep{int32(r.Rdi), &r.Rdx, r.R10}, true
	}
	return sleep{}, false
}

// reissueSleeps prepares a seized thread's detach: a relative sleep that the
// seizing interrupted would go on through restart_syscall, where a later
// checkpoint could no longer tell what it restarts (see RestartRegs).
// Instead it is re-issued as itself with what is left of it: the time left
// the kernel wrote when stopped, less the time stopped on clocks that ran
// meanwhile (not CPU-time ones), so that it ends when it would have. Not
// for a process found stopped: its sleeps were cut before cryo came.
// Tracer thread only.
func (t *Tracer) reissueSleeps() error {
	if t.groupStop != 0 {
		return nil
	}
	var errs []error
	for _, tid := range t.threads {
		at, ok := t.stopped[tid]
		if !ok {
			continue
		}
		var r unix.PtraceRegs
		if err := getRegs(tid, &r); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
			continue
		}
		s, ok := sleepOf(&r)
		if !ok {
			continue
		}
		var left unix.Timespec
		if err := t.ReadValue(s.left, &left); err != nil {
			errs = append(errs, err)
			continue
		}
		if s.clock >= 0 && s.clock != unix.CLOCK_PROCESS_CPUTIME_ID && s.clock != unix.CLOCK_THREAD_CPUTIME_ID {
			left = unix.NsecToTimespec(max(0, left.Nano()-time.Since(at).Nanoseconds()))
		}
		if err := t.WriteMem(s.left, kernel.Encode(&left)); err != nil {
			errs = append(errs, err)
			continue
		}
		r = RestartRegs(r)
		if err := setRegs(tid, &r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// returned is the return register of a system call failing with e.
func returned(e unix.Errno) uint64 { return -uint64(e) }
