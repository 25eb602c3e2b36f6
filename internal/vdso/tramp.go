package vdso

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// TrampKind is how a proxy redirects one old vDSO function.
type TrampKind int

const (
	// TrampNone: nothing is patched (remap keeps the function in place).
	TrampNone TrampKind = iota
	// TrampRel32 is x86 `jmp rel32` (5 bytes), used when the target is
	// within +-2 GiB.
	TrampRel32
	// TrampAbs64 is x86_64 `movabs $target,%rax; jmp *%rax; int3 x4` (16
	// bytes). %rax is free to clobber: it is the return register.
	TrampAbs64
	// TrampARM64 is `ldr x16, #8; br x16; .quad target` (16 bytes). x16
	// is the intra-procedure-call scratch register.
	TrampARM64
	// TrampSyscall is a stub that makes the equivalent system call, for a
	// function the runtime vDSO lacks.
	TrampSyscall
	// TrampENOSYS is a stub that returns -ENOSYS, for a function the
	// runtime vDSO lacks and no system call replaces (such as
	// __vdso_sgx_enter_enclave on a kernel without it).
	TrampENOSYS
)

var trampNames = [...]string{
	TrampNone:    "none",
	TrampRel32:   "jmp-rel32",
	TrampAbs64:   "movabs-jmp",
	TrampARM64:   "ldr-br",
	TrampSyscall: "syscall",
	TrampENOSYS:  "enosys",
}

func (k TrampKind) String() string { return trampNames[k] }

// amd64Syscalls are the system calls behind the x86_64 vDSO functions. Each
// takes its arguments in the same registers as the function (getrandom's
// extra state arguments are simply ignored), so a stub only loads the
// number.
var amd64Syscalls = map[string]uint32{
	"clock_gettime": 228,
	"gettimeofday":  96,
	"time":          201,
	"getcpu":        309,
	"clock_getres":  229,
	"getrandom":     318,
}

// baseName strips the vDSO's symbol prefixes: __vdso_clock_gettime and
// clock_gettime are the same function.
func baseName(name string) string {
	for _, p := range []string{"__vdso_", "__kernel_"} {
		if n, ok := strings.CutPrefix(name, p); ok {
			return n
		}
	}
	return name
}

// jump encodes a jump from pc to target for the given machine, choosing the
// shortest form that reaches.
func jump(m elf.Machine, pc, target uint64) (TrampKind, []byte, error) {
	switch m {
	case elf.EM_X86_64:
		if rel, ok := rel32(pc, target); ok {
			return TrampRel32, encodeRel32(rel), nil
		}
		b := make([]byte, 16)
		b[0], b[1] = 0x48, 0xb8 // movabs $imm64, %rax
		binary.LittleEndian.PutUint64(b[2:], target)
		b[10], b[11] = 0xff, 0xe0 // jmp *%rax
		copy(b[12:], []byte{0xcc, 0xcc, 0xcc, 0xcc})
		return TrampAbs64, b, nil
	case elf.EM_386:
		// The 32-bit address space wraps, so rel32 always reaches.
		return TrampRel32, encodeRel32(int32(uint32(target) - uint32(pc) - 5)), nil
	case elf.EM_AARCH64:
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b[0:], 0x58000050) // ldr x16, #8
		binary.LittleEndian.PutUint32(b[4:], 0xd61f0200) // br x16
		binary.LittleEndian.PutUint64(b[8:], target)
		return TrampARM64, b, nil
	}
	return 0, nil, fmt.Errorf("%w: no trampoline for machine %v", ErrFormat, m)
}

func rel32(pc, target uint64) (int32, bool) {
	d := int64(target - (pc + 5))
	return int32(d), d >= math.MinInt32 && d <= math.MaxInt32
}

func encodeRel32(rel int32) []byte {
	b := []byte{0xe9, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], uint32(rel))
	return b
}

// fallbackStub encodes a stand-in for a vDSO function the runtime lacks:
// `mov $nr,%eax; syscall; ret` when a system call does the same, else
// `mov $-ENOSYS,%eax; ret`.
func fallbackStub(m elf.Machine, name string) (TrampKind, []byte, error) {
	if m != elf.EM_X86_64 {
		return 0, nil, fmt.Errorf("no fallback for missing %s on %v", name, m)
	}
	if nr, ok := amd64Syscalls[baseName(name)]; ok {
		b := []byte{0xb8, 0, 0, 0, 0, 0x0f, 0x05, 0xc3}
		binary.LittleEndian.PutUint32(b[1:], nr)
		return TrampSyscall, b, nil
	}
	b := []byte{0xb8, 0, 0, 0, 0, 0xc3}
	enosys := -int32(unix.ENOSYS)
	binary.LittleEndian.PutUint32(b[1:], uint32(enosys))
	return TrampENOSYS, b, nil
}
