package ptrace

import (
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
func RestartRegs(r unix.PtraceRegs) unix.PtraceRegs {
	if int64(r.Orig_rax) < 0 || r.Rax != returned(kernel.ErestartRestartBlock) {
		return r
	}
	r.Rax = returned(kernel.ErestartNoHand)
	switch {
	case r.Orig_rax == unix.SYS_NANOSLEEP && r.Rsi != 0:
		// nanosleep(req, rem)
		r.Rdi = r.Rsi
	case r.Orig_rax == unix.SYS_CLOCK_NANOSLEEP && r.Rsi&unix.TIMER_ABSTIME == 0 && r.R10 != 0:
		// clock_nanosleep(clock, flags, req, rem)
		r.Rdx = r.R10
	}
	return r
}

// returned is the return register of a system call failing with e.
func returned(e unix.Errno) uint64 { return -uint64(e) }
