package cpu

import (
	"errors"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"slices"
	"testing"
)

// Bits that Dispatched leaves out on purpose: [word, bit].
var undispatched = map[string][2]uint{
	"monitor": {4, 3}, "vmx": {4, 5}, "hypervisor": {4, 31}, "osxsave": {4, 27},
	"mpx": {9, 14}, "fsgsbase": {9, 0}, "pku": {11, 3}, "ospke": {11, 4},
	"3dnow": {1, 31},
}

// capsWith sets the named feature bits.
func capsWith(t *testing.T, names ...string) Caps {
	t.Helper()
	var c Caps
	for _, n := range names {
		if wb, ok := undispatched[n]; ok {
			c[wb[0]] |= 1 << wb[1]
			continue
		}
		i := slices.IndexFunc(Dispatched, func(f Feature) bool { return f.Name == n })
		if i < 0 {
			t.Fatalf("no feature %q", n)
		}
		c[Dispatched[i].Word] |= 1 << Dispatched[i].Bit
	}
	return c
}

func record(c Caps, xcr0 uint64) *pb.CpuinfoEntry {
	return &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{
		CapabilityVer: capabilityVer, Capability: c[:], XfeaturesMask: pb.Uint64(xcr0),
	}}}
}

// thread is a saved FPU state with every component of bv present at its
// initial state (the kernel's default PKRU), then changed by set.
func thread(bv uint64, set func(x *pb.UserX86XsaveEntry)) *pb.UserX86FpregsEntry {
	x := &pb.UserX86XsaveEntry{
		XstateBv:    bv,
		YmmhSpace:   make([]uint32, 64),
		BndregState: make([]uint64, 8),
		BndcsrState: make([]uint64, 8),
		OpmaskReg:   make([]uint64, 8),
		ZmmUpper:    make([]uint64, 64),
		Hi16Zmm:     make([]uint64, 128),
		Pkru:        []uint32{pkruDefault, 0},
	}
	if set != nil {
		set(x)
	}
	return &pb.UserX86FpregsEntry{Xsave: x}
}

func TestCheck(t *testing.T) {
	const (
		xcr0Small  = 0x7            // x87 SSE AVX
		xcr0Big    = 0xe7           // and AVX-512
		xcr0MPXPKU = 0x7 | 0x218    // AVX, MPX, PKRU: qemu's -cpu max
		xcr0All    = 0xe7 | 0x218   // everything
		tcgBV      = xcr0MPXPKU     // TCG's XSAVE marks every component
		pkruBit    = uint64(1) << 9 // PKRU's XSTATE_BV bit
	)
	basic := []string{"sse", "sse2", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2"}
	small := &Host{Caps: capsWith(t, basic...), XCR0: xcr0Small}
	qemuMax := capsWith(t, append(slices.Clone(basic), "pku", "ospke", "mpx", "monitor", "vmx", "hypervisor", "fsgsbase", "3dnow")...)
	v1 := capsWith(t, "sse2", "gfni")
	big := capsWith(t, append(slices.Clone(basic), "avx512f", "avx512bw", "sha_ni", "rtm", "hypervisor")...)
	for _, tc := range []struct {
		name   string
		host   *Host
		info   *pb.CpuinfoEntry
		fpregs []*pb.UserX86FpregsEntry
		want   string // the error after "...uses: "; empty for none
	}{
		{name: "same CPU", host: small, info: record(small.Caps, xcr0Small),
			fpregs: []*pb.UserX86FpregsEntry{thread(0x7, nil)}},
		{name: "no images of the CPU", host: small},
		{name: "PKU, MPX, hypervisor bits unused", host: small, info: record(qemuMax, xcr0MPXPKU),
			fpregs: []*pb.UserX86FpregsEntry{thread(tcgBV, nil), thread(tcgBV, nil)}},
		{name: "PKRU changed", host: small, info: record(qemuMax, xcr0MPXPKU),
			fpregs: []*pb.UserX86FpregsEntry{thread(tcgBV, nil), thread(tcgBV, func(x *pb.UserX86XsaveEntry) { x.Pkru[0] = 0x55555550 })},
			want:   "pkru (register state in use)"},
		{name: "PKRU zero", host: small, info: record(qemuMax, xcr0MPXPKU),
			fpregs: []*pb.UserX86FpregsEntry{thread(tcgBV, func(x *pb.UserX86XsaveEntry) { x.Pkru[0] = 0 })},
			want:   "pkru (register state in use)"},
		{name: "PKRU changed, CPU has PKU", host: &Host{Caps: qemuMax, XCR0: xcr0MPXPKU}, info: record(qemuMax, xcr0MPXPKU),
			fpregs: []*pb.UserX86FpregsEntry{thread(tcgBV, func(x *pb.UserX86XsaveEntry) { x.Pkru[0] = 0 })}},
		{name: "MPX bounds set", host: small, info: record(qemuMax, xcr0MPXPKU),
			fpregs: []*pb.UserX86FpregsEntry{thread(tcgBV, func(x *pb.UserX86XsaveEntry) { x.BndregState[3] = 0x1000 })},
			want:   "mpx-bndregs (register state in use)"},
		{name: "MPX bit set, registers clear", host: small,
			fpregs: []*pb.UserX86FpregsEntry{thread(0x1f, nil)}},
		{name: "AVX-512 offered", host: small, info: record(big, xcr0Big),
			fpregs: []*pb.UserX86FpregsEntry{thread(0x7, nil)},
			want:   "avx512bw avx512f rtm sha_ni (instruction sets the dump's CPU offered)"},
		{name: "AVX-512 offered but not enabled by the kernel", host: small, info: record(capsWith(t, append(slices.Clone(basic), "avx512f")...), xcr0Small)},
		{name: "AVX-512 in CPUID here but not enabled", host: &Host{Caps: big, XCR0: xcr0Small}, info: record(big, xcr0Big),
			want: "avx512bw avx512f (instruction sets the dump's CPU offered)"},
		{name: "AVX-512 offered and in use", host: small, info: record(big, xcr0Big),
			fpregs: []*pb.UserX86FpregsEntry{thread(xcr0Big, func(x *pb.UserX86XsaveEntry) { x.Hi16Zmm[5] = 1 })},
			want:   "avx512bw avx512f rtm sha_ni (instruction sets the dump's CPU offered); avx512-hi16_zmm (register state in use)"},
		{name: "AVX-512 state at init", host: small,
			fpregs: []*pb.UserX86FpregsEntry{thread(xcr0Big, nil)}},
		{name: "bigger CPU", host: &Host{Caps: big, XCR0: xcr0All}, info: record(small.Caps, xcr0Small),
			fpregs: []*pb.UserX86FpregsEntry{thread(0x7, nil)}},
		{name: "image without CPUID words", host: small,
			info: &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{XfeaturesMask: pb.Uint64(xcr0All)}}},
			want: "avx512-opmask avx512-zmm_hi256 avx512-hi16_zmm (register state the dump's CPU had enabled)"},
		{name: "image without CPUID words, MPX and PKU", host: small,
			info: &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{XfeaturesMask: pb.Uint64(xcr0MPXPKU)}}}},
		{name: "capability version 1 has no word 11", host: small,
			info: &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{
				CapabilityVer: 1, Capability: v1[:12], XfeaturesMask: pb.Uint64(xcr0Small)}}}},
		{name: "CRIU image without XCR0", host: small,
			info: &pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{CapabilityVer: capabilityVer, Capability: big[:]}}},
			want: "avx512bw avx512f rtm sha_ni (instruction sets the dump's CPU offered)"},
		{name: "PKRU bit clear", host: small,
			fpregs: []*pb.UserX86FpregsEntry{thread(xcr0MPXPKU&^pkruBit, func(x *pb.UserX86XsaveEntry) { x.Pkru = nil })}},
		{name: "no xsave area", host: small, fpregs: []*pb.UserX86FpregsEntry{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.host.Check(tc.info, FpregsInUse(tc.fpregs...))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tc.want != "" && !errors.Is(err, ErrMissingFeatures):
				t.Errorf("Check = %v, want ErrMissingFeatures", err)
			case tc.want != "" && err.Error() != ErrMissingFeatures.Error()+": "+tc.want:
				t.Errorf("Check = %q\nwant ...: %q", err, tc.want)
			}
		})
	}
}

// TestDispatchedTable keeps the table sound: names unique, bits in
// range, no bit the check deliberately leaves out.
func TestDispatchedTable(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Dispatched {
		if seen[f.Name] || f.Word >= numCapWords || f.Bit > 31 || capWords[f.Word].leaf == 0 {
			t.Errorf("bad entry %+v", f)
		}
		seen[f.Name] = true
		for n, wb := range undispatched {
			if wb == [2]uint{f.Word, f.Bit} {
				t.Errorf("%s is %s, which user space does not dispatch on", f.Name, n)
			}
		}
	}
}
