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
// original call: a relative sleep (nanosleep, poll and futex timeouts)
// starts again with its full length, an absolute one keeps its deadline.
func RestartRegs(r unix.PtraceRegs) unix.PtraceRegs {
	if int64(r.Orig_rax) >= 0 && r.Rax == returned(kernel.ErestartRestartBlock) {
		r.Rax = returned(kernel.ErestartNoHand)
	}
	return r
}

// returned is the return register of a system call failing with e.
func returned(e unix.Errno) uint64 { return -uint64(e) }
