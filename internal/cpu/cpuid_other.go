//go:build !amd64

package cpu

// A CPU that is not x86 has none of the CPUID leaves or XSAVE components:
// a checkpoint from x86_64 is refused by the register conversion.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32) { return 0, 0, 0, 0 }

func xgetbv0() (eax, edx uint32) { return 0, 0 }
