package ptrace

import (
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

const (
	pageSize = kernel.PageSize
	// scratchSize: the gadget's page, the caller's buffer, and the
	// entries of a batch (see Syscalls).
	scratchSize = 2*pageSize + batchSize
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

// batchCode runs the batch of n entries at rbx, n in r12 (both kept by
// syscall), and traps once all are done, or at the first that failed
// without its may-fail flag, rbx then pointing at it:
//
//	loop: mov rax,[rbx]; mov rdi,[rbx+8]; mov rsi,[rbx+16]; mov rdx,[rbx+24]
//	      mov r10,[rbx+32]; mov r8,[rbx+40]; mov r9,[rbx+48]; syscall
//	      mov [rbx+64],rax; cmp rax,-4095; jb ok
//	      test byte [rbx+56],1; jz done
//	ok:   add rbx,72; dec r12; jnz loop
//	done: int3
var batchCode = []byte{
	0x48, 0x8b, 0x03, 0x48, 0x8b, 0x7b, 0x08, 0x48, 0x8b, 0x73, 0x10, 0x48, 0x8b, 0x53, 0x18,
	0x4c, 0x8b, 0x53, 0x20, 0x4c, 0x8b, 0x43, 0x28, 0x4c, 0x8b, 0x4b, 0x30, 0x0f, 0x05,
	0x48, 0x89, 0x43, 0x40, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x72, 0x06,
	0xf6, 0x43, 0x38, 0x01, 0x74, 0x09,
	0x48, 0x83, 0xc3, 0x48, 0x49, 0xff, 0xcc, 0x75, 0xc8,
	0xcc,
}

// batchStop is where batchCode at address code ends.
func batchStop(code uint64) stop { return stop{unix.SIGTRAP, code + uint64(len(batchCode))} }

// setBatch sets up batchCode at pc to run the n entries at entries.
func setBatch(r *unix.PtraceRegs, pc, entries uint64, n int) {
	r.Rip, r.Rbx, r.R12, r.Orig_rax = pc, entries, uint64(n), ^uint64(0)
}

// batchLeft is where a batch stopped: the entry it points at and how
// many were left from there.
func batchLeft(r *unix.PtraceRegs) (entry, left uint64) { return r.Rbx, r.R12 }

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
