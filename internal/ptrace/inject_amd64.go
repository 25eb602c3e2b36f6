package ptrace

import (
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

const (
	pageSize    = kernel.PageSize
	scratchSize = 2 * pageSize
	maxArgs     = 6
	// trapOffset is where the int3 sits in gadgetCode.
	trapOffset = 2
	// fpRegset holds the registers a called function may change beyond
	// the general-purpose ones: x87, SSE, AVX and the rest of XSAVE.
	fpRegset = unix.NT_X86_XSTATE
	// flagDF is the direction flag, which the ABI wants clear at calls.
	flagDF = 1 << 10
	// archOK: the tracer runs on this architecture.
	archOK = true
)

// archErr is never returned on x86_64.
var archErr error

// gadgetCode is "syscall; int3".
var gadgetCode = []byte{0x0f, 0x05, 0xcc}

// trapStop is where the gadget at address gadget ends: at the int3's
// SIGTRAP, with the instruction pointer right after the int3.
func trapStop(gadget uint64) stop { return stop{unix.SIGTRAP, gadget + trapOffset + 1} }

// faultStop is where the gadget at address gadget ends when its system
// call has unmapped the gadget itself: at the SIGSEGV of fetching the int3.
func faultStop(gadget uint64) stop { return stop{unix.SIGSEGV, gadget + trapOffset} }

// setSyscall sets up system call nr at pc. orig_rax = -1 keeps the kernel
// from restarting, into the gadget, a system call the thread was stopped
// in.
func setSyscall(r *unix.PtraceRegs, pc uint64, nr int, args []uint64) {
	r.Rip, r.Rax, r.Orig_rax = pc, uint64(nr), ^uint64(0)
	dst := [maxArgs]*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*dst[i] = a
	}
}

// setCall sets up a call of fn with the return address at sp; rax = 0
// tells a variadic callee that no vector registers carry arguments.
func setCall(r *unix.PtraceRegs, fn, sp uint64, args []uint64) {
	r.Rip, r.Rsp, r.Rax, r.Orig_rax = fn, sp, 0, ^uint64(0)
	r.Eflags &^= flagDF
	dst := [maxArgs]*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.Rcx, &r.R8, &r.R9}
	for i, a := range args {
		*dst[i] = a
	}
}

func result(r *unix.PtraceRegs) uint64 { return r.Rax }

func pc(r *unix.PtraceRegs) uint64 { return r.Rip }
