package cpu

import (
	"fmt"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"slices"
	"strings"
)

// Image describes this CPU for cpuinfo.img, as CRIU does: identity,
// CPUID feature words and XSAVE layout.
func (h *Host) Image() *pb.CpuinfoEntry {
	vendor := pb.CpuinfoX86Entry_UNKNOWN
	switch h.Vendor {
	case "GenuineIntel":
		vendor = pb.CpuinfoX86Entry_INTEL
	case "AuthenticAMD":
		vendor = pb.CpuinfoX86Entry_AMD
	}
	e := &pb.CpuinfoX86Entry{
		VendorId:      vendor,
		CpuFamily:     h.Family,
		Model:         h.Model,
		Stepping:      h.Stepping,
		CapabilityVer: capabilityVer,
		Capability:    slices.Clone(h.Caps[:]),
		XfeaturesMask: pb.Uint64(h.XCR0),
		XsaveSize:     pb.Uint32(h.XSaveSize),
		XsaveSizeMax:  pb.Uint32(h.XSaveSizeMax),
	}
	if h.ModelID != "" {
		e.ModelId = pb.String(h.ModelID)
	}
	return &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{e}}
}

// pkruDefault is the PKRU Linux gives every new thread: all access to
// every protection key but key 0 disabled.
const pkruDefault = 0x55555554

const pkruComponent Component = 9

// InUse returns the components of a thread's saved state whose registers
// are not in their initial state: not all zeros, and for PKRU not the
// kernel's default. x87 and SSE count as always in use. A set XSTATE_BV
// bit alone does not mean use: XSAVE under emulators (qemu TCG) sets it
// for every enabled component.
func InUse(x *pb.UserX86XsaveEntry) uint64 {
	used := uint64(legacyMask)
	bv := x.GetXstateBv()
	for _, ic := range imageComponents {
		if bv&(1<<ic.c) == 0 {
			continue
		}
		var nonzero bool
		switch {
		case ic.c == pkruComponent:
			p := x.GetPkru()
			nonzero = len(p) == 0 || p[0] != pkruDefault
		case ic.u32 != nil:
			nonzero = slices.ContainsFunc(*ic.u32(x), func(w uint32) bool { return w != 0 })
		default:
			nonzero = slices.ContainsFunc(*ic.u64(x), func(w uint64) bool { return w != 0 })
		}
		if nonzero {
			used |= 1 << ic.c
		}
	}
	return used
}

// legacyNeeds is what an image without CPUID words (made before cryo
// recorded them) is taken to need: the AVX and AVX-512 state its CPU had
// enabled, as libraries pick AVX code paths by it.
const legacyNeeds = 1<<2 | 0xe0

// FpregsInUse returns the components of the threads' saved states fpregs
// that are in use (InUse), for Check.
func FpregsInUse(fpregs ...*pb.UserX86FpregsEntry) uint64 {
	var used uint64
	for _, f := range fpregs {
		if x := f.GetXsave(); x != nil {
			used |= InUse(x)
		}
	}
	return used
}

// Check decides whether the process of a checkpoint can run on this CPU.
// It refuses, naming them, for the instruction-set extensions the dump's
// CPU offered (info, nil for a checkpoint without cpuinfo.img) that this
// one lacks, since libraries and runtimes chose their code by them at
// start-up; and for the register state its threads have in use (used,
// from FpregsInUse) that this CPU lacks: AVX-512 registers, MPX bounds, a
// PKRU other than the default. Enabled but unused state (MPX, PKU on a
// CPU that has them) does not count.
func (h *Host) Check(info *pb.CpuinfoEntry, used uint64) error {
	var insns []string
	var legacy uint64
	for _, x := range info.GetX86Entry() {
		if caps, ok := capsOf(x.GetCapabilityVer(), x.GetCapability()); ok {
			// An image without XCR0 (older CRIU): every feature its CPU
			// had counts as usable.
			xcr0 := x.GetXfeaturesMask()
			if x.XfeaturesMask == nil {
				xcr0 = ^uint64(0)
			}
			insns = append(insns, h.missingInstructions(&caps, xcr0)...)
		} else {
			legacy |= x.GetXfeaturesMask() & legacyNeeds
		}
	}
	var parts []string
	if len(insns) > 0 {
		slices.Sort(insns)
		parts = append(parts, strings.Join(slices.Compact(insns), " ")+" (instruction sets the dump's CPU offered)")
	}
	if m := legacy &^ h.XCR0; m != 0 {
		parts = append(parts, Names(m)+" (register state the dump's CPU had enabled)")
	}
	if m := used &^ h.XCR0; m != 0 {
		parts = append(parts, Names(m)+" (register state in use)")
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrMissingFeatures, strings.Join(parts, "; "))
}
