package cpu

import (
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	"google.golang.org/protobuf/proto"
)

// amxMask covers the AMX tile components, which a process uses only after
// asking the kernel for them (arch_prctl ARCH_REQ_XCOMP_PERM), so a CPU
// without them cannot have been chosen silently at start-up.
const amxMask = 1<<17 | 1<<18

// Image describes this CPU for cpuinfo.img.
func (h *Host) Image() *cpuinfo.CpuinfoEntry {
	vendor := cpuinfo.CpuinfoX86Entry_UNKNOWN
	switch h.Vendor {
	case "GenuineIntel":
		vendor = cpuinfo.CpuinfoX86Entry_INTEL
	case "AuthenticAMD":
		vendor = cpuinfo.CpuinfoX86Entry_AMD
	}
	return &cpuinfo.CpuinfoEntry{X86Entry: []*cpuinfo.CpuinfoX86Entry{{
		VendorId:      vendor.Enum(),
		CpuFamily:     proto.Uint32(h.Family),
		Model:         proto.Uint32(h.Model),
		Stepping:      proto.Uint32(h.Stepping),
		CapabilityVer: proto.Uint32(0),
		XfeaturesMask: proto.Uint64(h.XCR0),
		XsaveSize:     proto.Uint32(h.XSaveSize),
	}}}
}

// Needed returns the register state components a process dumped on the
// CPU that e describes may rely on: every one its CPU had enabled, since
// libraries pick their code paths (AVX-512 string functions, say) by what
// the CPU offers at start-up, whether or not the registers were in use at
// the dump. The AMX tiles are left out: a program must ask for them first.
func Needed(e *cpuinfo.CpuinfoEntry) uint64 {
	var need uint64
	for _, x := range e.GetX86Entry() {
		need |= x.GetXfeaturesMask()
	}
	return need &^ amxMask
}
