package cpu

import (
	"bytes"
	"strings"
)

// Caps holds CPUID feature words in the order of CRIU's cpuinfo image
// (cpuinfo_x86_entry.capability, capability_ver 2), which is Linux's
// x86_capability order of the time: word 0 is leaf 1 EDX, word 4 leaf 1
// ECX, word 9 leaf 7 EBX and so on (capWords).
type Caps [numCapWords]uint32

const (
	numCapWords = 19
	// capabilityVer is CRIU's version of that word layout.
	capabilityVer = 2
	// capabilityVer1Words is how many words version 1 had; its words
	// 0-10 mean the same as version 2's.
	capabilityVer1Words = 11
)

// Register names for capWords.
const (
	regEAX = iota
	regEBX
	regECX
	regEDX
)

// capWords says where each word comes from. Words 2, 3, 5, 7 and 8 are
// other vendors' leaves or Linux's own synthetic bits: they stay zero.
var capWords = [numCapWords]struct {
	leaf, sub uint32
	reg       int
}{
	0:  {1, 0, regEDX},
	1:  {0x80000001, 0, regEDX},
	4:  {1, 0, regECX},
	6:  {0x80000001, 0, regECX},
	9:  {7, 0, regEBX},
	10: {0xd, 1, regEAX},
	11: {7, 0, regECX},
	12: {0xf, 1, regEDX},
	13: {0x80000008, 0, regEBX},
	14: {6, 0, regEAX},
	15: {0x8000000a, 0, regEDX},
	16: {0xf, 0, regEDX},
	17: {0x80000007, 0, regEBX},
	18: {7, 0, regEDX},
}

// readCaps queries CPUID for every word, leaving at zero those whose
// leaf this CPU does not have (an absent leaf reads as another leaf's
// data, not as zeros).
func readCaps() Caps {
	var c Caps
	maxBasic, _, _, _ := cpuid(0, 0)
	maxExt, _, _, _ := cpuid(0x80000000, 0)
	for i, w := range capWords {
		if w.leaf == 0 || (w.leaf < 0x80000000 && w.leaf > maxBasic) || (w.leaf >= 0x80000000 && w.leaf > maxExt) {
			continue
		}
		a, b, cx, d := cpuid(w.leaf, w.sub)
		c[i] = [...]uint32{a, b, cx, d}[w.reg]
	}
	return c
}

// Feature is a CPUID feature bit that user space may rely on.
type Feature struct {
	// Name is the kernel's name for it, as /proc/cpuinfo shows it.
	Name      string
	Word, Bit uint
	// XCR0 is the register state the kernel must have enabled for the
	// instructions to be usable (AVX: YMM; AVX-512: opmask and ZMM), as
	// libraries check before they use them.
	XCR0 uint64
}

const (
	xcr0AVX    = 0x6  // SSE and YMM
	xcr0AVX512 = 0xe6 // and opmask, ZMM_Hi256, Hi16_ZMM
)

// Dispatched lists the instruction-set extensions that libraries and
// runtimes choose their code paths by at start-up (glibc's ifuncs and
// tunables, the Go runtime, OpenSSL, compilers' function multiversioning):
// a process started where one was present may execute its instructions at
// any time. Left out on purpose are the bits user space does not pick code
// by and hypervisors often hide or change: hypervisor, monitor/mwait,
// VMX/SVM, MPX and PKU/OSPKE (whose register state is checked when in use
// instead), OSXSAVE (XCR0 is checked instead), FSGSBASE (usable only when
// the kernel enables it, announced in AT_HWCAP2), SMEP/SMAP/UMIP/LA57
// (the kernel's), 3DNow! (gone from CPUs since 2010, used by nothing
// current), and the AMX tiles (a process asks the kernel for them first;
// tile data in use is refused at dump).
var Dispatched = []Feature{
	{Name: "cmov", Word: 0, Bit: 15},
	{Name: "mmx", Word: 0, Bit: 23},
	{Name: "fxsr", Word: 0, Bit: 24},
	{Name: "sse", Word: 0, Bit: 25},
	{Name: "sse2", Word: 0, Bit: 26},
	{Name: "rdtscp", Word: 1, Bit: 27},
	{Name: "pni", Word: 4, Bit: 0},
	{Name: "pclmulqdq", Word: 4, Bit: 1},
	{Name: "ssse3", Word: 4, Bit: 9},
	{Name: "fma", Word: 4, Bit: 12, XCR0: xcr0AVX},
	{Name: "cx16", Word: 4, Bit: 13},
	{Name: "sse4_1", Word: 4, Bit: 19},
	{Name: "sse4_2", Word: 4, Bit: 20},
	{Name: "movbe", Word: 4, Bit: 22},
	{Name: "popcnt", Word: 4, Bit: 23},
	{Name: "aes", Word: 4, Bit: 25},
	{Name: "xsave", Word: 4, Bit: 26},
	{Name: "avx", Word: 4, Bit: 28, XCR0: xcr0AVX},
	{Name: "f16c", Word: 4, Bit: 29, XCR0: xcr0AVX},
	{Name: "rdrand", Word: 4, Bit: 30},
	{Name: "lahf_lm", Word: 6, Bit: 0},
	{Name: "abm", Word: 6, Bit: 5},
	{Name: "sse4a", Word: 6, Bit: 6},
	{Name: "3dnowprefetch", Word: 6, Bit: 8},
	{Name: "xop", Word: 6, Bit: 11, XCR0: xcr0AVX},
	{Name: "fma4", Word: 6, Bit: 16, XCR0: xcr0AVX},
	{Name: "tbm", Word: 6, Bit: 21},
	{Name: "bmi1", Word: 9, Bit: 3},
	{Name: "hle", Word: 9, Bit: 4},
	{Name: "avx2", Word: 9, Bit: 5, XCR0: xcr0AVX},
	{Name: "bmi2", Word: 9, Bit: 8},
	{Name: "erms", Word: 9, Bit: 9},
	{Name: "rtm", Word: 9, Bit: 11},
	{Name: "avx512f", Word: 9, Bit: 16, XCR0: xcr0AVX512},
	{Name: "avx512dq", Word: 9, Bit: 17, XCR0: xcr0AVX512},
	{Name: "rdseed", Word: 9, Bit: 18},
	{Name: "adx", Word: 9, Bit: 19},
	{Name: "avx512ifma", Word: 9, Bit: 21, XCR0: xcr0AVX512},
	{Name: "clflushopt", Word: 9, Bit: 23},
	{Name: "clwb", Word: 9, Bit: 24},
	{Name: "avx512pf", Word: 9, Bit: 26, XCR0: xcr0AVX512},
	{Name: "avx512er", Word: 9, Bit: 27, XCR0: xcr0AVX512},
	{Name: "avx512cd", Word: 9, Bit: 28, XCR0: xcr0AVX512},
	{Name: "sha_ni", Word: 9, Bit: 29},
	{Name: "avx512bw", Word: 9, Bit: 30, XCR0: xcr0AVX512},
	{Name: "avx512vl", Word: 9, Bit: 31, XCR0: xcr0AVX512},
	{Name: "xsaveopt", Word: 10, Bit: 0},
	{Name: "xsavec", Word: 10, Bit: 1},
	{Name: "xgetbv1", Word: 10, Bit: 2},
	{Name: "avx512vbmi", Word: 11, Bit: 1, XCR0: xcr0AVX512},
	{Name: "waitpkg", Word: 11, Bit: 5},
	{Name: "avx512_vbmi2", Word: 11, Bit: 6, XCR0: xcr0AVX512},
	{Name: "gfni", Word: 11, Bit: 8},
	{Name: "vaes", Word: 11, Bit: 9, XCR0: xcr0AVX},
	{Name: "vpclmulqdq", Word: 11, Bit: 10, XCR0: xcr0AVX},
	{Name: "avx512_vnni", Word: 11, Bit: 11, XCR0: xcr0AVX512},
	{Name: "avx512_bitalg", Word: 11, Bit: 12, XCR0: xcr0AVX512},
	{Name: "avx512_vpopcntdq", Word: 11, Bit: 14, XCR0: xcr0AVX512},
	{Name: "rdpid", Word: 11, Bit: 22},
	{Name: "cldemote", Word: 11, Bit: 25},
	{Name: "movdiri", Word: 11, Bit: 27},
	{Name: "movdir64b", Word: 11, Bit: 28},
	{Name: "clzero", Word: 13, Bit: 0},
	{Name: "avx512_4vnniw", Word: 18, Bit: 2, XCR0: xcr0AVX512},
	{Name: "avx512_4fmaps", Word: 18, Bit: 3, XCR0: xcr0AVX512},
	{Name: "fsrm", Word: 18, Bit: 4},
	{Name: "avx512_vp2intersect", Word: 18, Bit: 8, XCR0: xcr0AVX512},
	{Name: "serialize", Word: 18, Bit: 14},
	{Name: "avx512_fp16", Word: 18, Bit: 23, XCR0: xcr0AVX512},
}

// usable says whether a CPU with these words and XCR0 offers f to user
// space.
func (f Feature) usable(c *Caps, xcr0 uint64) bool {
	return c[f.Word]&(1<<f.Bit) != 0 && xcr0&f.XCR0 == f.XCR0
}

// Usable lists the names of the Dispatched features a CPU with these
// words and XCR0 offers.
func (c *Caps) Usable(xcr0 uint64) []string {
	var names []string
	for _, f := range Dispatched {
		if f.usable(c, xcr0) {
			names = append(names, f.Name)
		}
	}
	return names
}

// missingInstructions lists the Dispatched features the dump's CPU
// offered and this one does not.
func (h *Host) missingInstructions(dumped *Caps, dumpedXCR0 uint64) []string {
	var missing []string
	for _, f := range Dispatched {
		if f.usable(dumped, dumpedXCR0) && !f.usable(&h.Caps, h.XCR0) {
			missing = append(missing, f.Name)
		}
	}
	return missing
}

// capsOf reads the words of a cpuinfo entry. ok is false for an entry
// without them (cryo before it recorded them).
func capsOf(ver uint32, words []uint32) (c Caps, ok bool) {
	n := len(words)
	switch {
	case n == 0:
		return c, false
	case ver < capabilityVer:
		n = min(n, capabilityVer1Words)
	}
	copy(c[:], words[:min(n, numCapWords)])
	return c, true
}

// brand reads the processor brand string of leaves 0x80000002-4.
func brand() string {
	if maxExt, _, _, _ := cpuid(0x80000000, 0); maxExt < 0x80000004 {
		return ""
	}
	var b []byte
	for leaf := uint32(0x80000002); leaf <= 0x80000004; leaf++ {
		a, bx, c, d := cpuid(leaf, 0)
		for _, r := range []uint32{a, bx, c, d} {
			b = append(b, le32(r)...)
		}
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}
