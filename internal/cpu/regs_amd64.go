package cpu

import (
	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// regFields pairs each ptrace register with its CRIU field, in
// user_regs_struct order.
func regFields(r *unix.PtraceRegs, e *pb.UserX86RegsEntry) []struct {
	reg *uint64
	img *uint64
} {
	return []struct {
		reg *uint64
		img *uint64
	}{
		{&r.R15, &e.R15}, {&r.R14, &e.R14}, {&r.R13, &e.R13}, {&r.R12, &e.R12},
		{&r.Rbp, &e.Bp}, {&r.Rbx, &e.Bx}, {&r.R11, &e.R11}, {&r.R10, &e.R10},
		{&r.R9, &e.R9}, {&r.R8, &e.R8}, {&r.Rax, &e.Ax}, {&r.Rcx, &e.Cx},
		{&r.Rdx, &e.Dx}, {&r.Rsi, &e.Si}, {&r.Rdi, &e.Di}, {&r.Orig_rax, &e.OrigAx},
		{&r.Rip, &e.Ip}, {&r.Cs, &e.Cs}, {&r.Eflags, &e.Flags}, {&r.Rsp, &e.Sp},
		{&r.Ss, &e.Ss}, {&r.Fs_base, &e.FsBase}, {&r.Gs_base, &e.GsBase},
		{&r.Ds, &e.Ds}, {&r.Es, &e.Es}, {&r.Fs, &e.Fs}, {&r.Gs, &e.Gs},
	}
}

// RegsToImage converts ptrace's general registers to CRIU's.
func RegsToImage(r *unix.PtraceRegs) *pb.UserX86RegsEntry {
	e := &pb.UserX86RegsEntry{Mode: pb.UserX86RegsMode_NATIVE.Enum()}
	for _, f := range regFields(r, e) {
		*f.img = *f.reg
	}
	return e
}

// RegsFromImage converts CRIU's general registers to ptrace's. Only native
// 64-bit tasks are supported.
func RegsFromImage(e *pb.UserX86RegsEntry) (*unix.PtraceRegs, error) {
	if e.GetMode() != pb.UserX86RegsMode_NATIVE {
		return nil, errorf("registers of a %v task: only native 64-bit tasks are supported", e.GetMode())
	}
	r := &unix.PtraceRegs{}
	for _, f := range regFields(r, e) {
		*f.reg = *f.img
	}
	return r, nil
}
