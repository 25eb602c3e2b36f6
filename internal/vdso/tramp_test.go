package vdso

import (
	"debug/elf"
	"encoding/binary"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// decodeAll decodes x86_64 code completely, failing on any byte that is
// not part of a whole instruction.
func decodeAll(t *testing.T, code []byte) []x86asm.Inst {
	t.Helper()
	var insts []x86asm.Inst
	for len(code) > 0 {
		in, err := x86asm.Decode(code, 64)
		if err != nil {
			t.Fatalf("decode % x: %v", code, err)
		}
		// x86asm reports a truncated instruction as Op 0 without error.
		if in.Op == 0 || in.Len == 0 {
			t.Fatalf("decode % x: truncated instruction", code)
		}
		insts = append(insts, in)
		code = code[in.Len:]
	}
	return insts
}

func TestJumpAMD64(t *testing.T) {
	const pc = 0x7f0000001af0
	tests := []struct {
		name   string
		target uint64
		kind   TrampKind
	}{
		{"forward near", pc + 0x10000, TrampRel32},
		{"backward near", pc - 0x10000, TrampRel32},
		{"edge forward", pc + 5 + 0x7fffffff, TrampRel32},
		{"edge backward", pc + 5 - 0x80000000, TrampRel32},
		{"just beyond forward", pc + 5 + 0x80000000, TrampAbs64},
		{"just beyond backward", pc + 5 - 0x80000001, TrampAbs64},
		{"far", 0x1000, TrampAbs64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, code, err := jump(elf.EM_X86_64, pc, tt.target)
			if err != nil {
				t.Fatal(err)
			}
			if kind != tt.kind {
				t.Fatalf("kind %v, want %v", kind, tt.kind)
			}
			insts := decodeAll(t, code)
			switch kind {
			case TrampRel32:
				if len(code) != 5 || len(insts) != 1 || insts[0].Op != x86asm.JMP {
					t.Fatalf("got %v, want one 5-byte jmp", insts)
				}
				rel, ok := insts[0].Args[0].(x86asm.Rel)
				if !ok || uint64(pc+5+int64(rel)) != tt.target {
					t.Fatalf("jmp %v from %#x does not reach %#x", insts[0].Args[0], pc, tt.target)
				}
			case TrampAbs64:
				if len(code) != 16 || len(insts) != 6 {
					t.Fatalf("got %d bytes, %v; want 16 bytes, 6 instructions", len(code), insts)
				}
				mov, jmp := insts[0], insts[1]
				if mov.Op != x86asm.MOV || mov.Args[0] != x86asm.RAX || uint64(mov.Args[1].(x86asm.Imm)) != tt.target {
					t.Errorf("first instruction %v, want movabs $%#x,%%rax", mov, tt.target)
				}
				if jmp.Op != x86asm.JMP || jmp.Args[0] != x86asm.RAX {
					t.Errorf("second instruction %v, want jmp *%%rax", jmp)
				}
				for _, in := range insts[2:] {
					if in.Op != x86asm.INT || in.Len != 1 {
						t.Errorf("padding %v, want int3", in)
					}
				}
			}
		})
	}
}

func TestSyscallStubsAMD64(t *testing.T) {
	for name, nr := range amd64Syscalls {
		for _, sym := range []string{name, "__vdso_" + name} {
			kind, code, err := fallbackStub(elf.EM_X86_64, sym)
			if err != nil || kind != TrampSyscall {
				t.Fatalf("%s: %v, %v; want a syscall stub", sym, kind, err)
			}
			insts := decodeAll(t, code)
			if len(insts) != 3 || insts[0].Op != x86asm.MOV || insts[0].Args[0] != x86asm.EAX ||
				uint32(insts[0].Args[1].(x86asm.Imm)) != nr ||
				insts[1].Op != x86asm.SYSCALL || insts[2].Op != x86asm.RET {
				t.Errorf("%s: stub %v, want mov $%d,%%eax; syscall; ret", sym, insts, nr)
			}
		}
	}
	kind, code, err := fallbackStub(elf.EM_X86_64, "__vdso_sgx_enter_enclave")
	if err != nil || kind != TrampENOSYS {
		t.Fatalf("sgx_enter_enclave: %v, %v; want an ENOSYS stub", kind, err)
	}
	insts := decodeAll(t, code)
	if len(insts) != 2 || insts[0].Op != x86asm.MOV || int32(insts[0].Args[1].(x86asm.Imm)) != -38 || insts[1].Op != x86asm.RET {
		t.Errorf("ENOSYS stub %v, want mov $-38,%%eax; ret", insts)
	}
	if _, _, err := fallbackStub(elf.EM_AARCH64, "__kernel_clock_gettime"); err == nil {
		t.Error("arm64 fallback: no error")
	}
}

func TestJumpARM64(t *testing.T) {
	const target uint64 = 0xffff_8000_1234_5678
	kind, code, err := jump(elf.EM_AARCH64, 0x1000, target)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{0x58000050, 0xd61f0200} // ldr x16, #8; br x16
	if kind != TrampARM64 || len(code) != 16 {
		t.Fatalf("kind %v, %d bytes; want ldr-br, 16 bytes", kind, len(code))
	}
	for i, w := range want {
		if got := binary.LittleEndian.Uint32(code[4*i:]); got != w {
			t.Errorf("word %d = %#08x, want %#08x", i, got, w)
		}
	}
	if got := binary.LittleEndian.Uint64(code[8:]); got != target {
		t.Errorf("literal %#x, want %#x", got, target)
	}
}

func TestJump386Wraps(t *testing.T) {
	_, code, err := jump(elf.EM_386, 0xfffff000, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	in, err := x86asm.Decode(code, 32)
	if err != nil || in.Op != x86asm.JMP || in.Len != 5 {
		t.Fatalf("decode %v, %v: want a 5-byte jmp", in, err)
	}
	if got := uint32(0xfffff000 + 5 + int64(in.Args[0].(x86asm.Rel))); got != 0x1000 {
		t.Errorf("jmp lands at %#x, want 0x1000", got)
	}
}
