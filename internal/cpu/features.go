package cpu

import (
	"fmt"
	"math/bits"
	"strings"
)

// Component is an XSAVE state component number (the bit in XCR0).
type Component uint

var componentNames = map[Component]string{
	0: "x87", 1: "sse", 2: "avx", 3: "mpx-bndregs", 4: "mpx-bndcsr",
	5: "avx512-opmask", 6: "avx512-zmm_hi256", 7: "avx512-hi16_zmm",
	9: "pkru", 17: "amx-tilecfg", 18: "amx-tiledata", 19: "apx",
}

func (c Component) String() string {
	if n, ok := componentNames[c]; ok {
		return n
	}
	return fmt.Sprintf("xstate-%d", uint(c))
}

// Names lists the components set in an XCR0-style mask.
func Names(mask uint64) string {
	var s []string
	for mask != 0 {
		c := Component(bits.TrailingZeros64(mask))
		s = append(s, c.String())
		mask &^= 1 << c
	}
	return strings.Join(s, " ")
}

// Host describes this CPU as far as restoring a thread's state goes.
type Host struct {
	Vendor string
	// Family, Model and Stepping identify the CPU, as /proc/cpuinfo does.
	Family, Model, Stepping uint32
	// XCR0 is the set of XSAVE components the kernel enabled.
	XCR0 uint64
	// XSaveSize is the size of the standard-format XSAVE area for XCR0,
	// XSaveSizeMax for every component the CPU supports.
	XSaveSize, XSaveSizeMax uint32
	// ModelID is the brand string.
	ModelID string
	// Caps are the CPUID feature words.
	Caps Caps
	// offsets holds each user component's standard-format offset and size.
	offsets map[Component][2]uint32
}

// ReadHost queries this CPU with CPUID and XGETBV.
func ReadHost() *Host {
	h := &Host{offsets: map[Component][2]uint32{}}
	_, b, c, d := cpuid(0, 0)
	h.Vendor = string(le32(b)) + string(le32(d)) + string(le32(c))
	a, _, _, _ := cpuid(1, 0)
	h.Stepping = a & 0xf
	h.Model = (a >> 4) & 0xf
	h.Family = (a >> 8) & 0xf
	if h.Family == 0xf {
		h.Family += (a >> 20) & 0xff
	}
	if h.Family >= 6 {
		h.Model += ((a >> 16) & 0xf) << 4
	}
	lo, hi := xgetbv0()
	h.XCR0 = uint64(hi)<<32 | uint64(lo)
	_, h.XSaveSize, h.XSaveSizeMax, _ = cpuid(0xd, 0)
	h.Caps = readCaps()
	h.ModelID = brand()
	for c := Component(2); c < 64; c++ {
		if h.XCR0&(1<<c) == 0 {
			continue
		}
		size, off, _, _ := cpuid(0xd, uint32(c))
		h.offsets[c] = [2]uint32{off, size}
	}
	return h
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
