package kernel

import "golang.org/x/sys/unix"

// The ICMP type filters of raw sockets, which x/sys lacks: a bit per ICMP
// type the socket does not take.
const (
	// ICMPFilter is ICMP_FILTER (include/uapi/linux/icmp.h), at level
	// unix.SOL_RAW of a raw IPPROTO_ICMP socket: struct icmp_filter, one
	// 32-bit mask.
	ICMPFilter = 1
	// ICMPv6Filter is ICMPV6_FILTER (include/uapi/linux/icmpv6.h), at
	// level unix.SOL_ICMPV6 of a raw IPPROTO_ICMPV6 socket: struct
	// icmp6_filter, eight 32-bit words.
	ICMPv6Filter = 1
)

// ICMPFilterOf returns the level and option of the ICMP type filter of a
// raw socket of family and protocol, and its size in 32-bit words; ok is
// false for a socket that has none.
func ICMPFilterOf(family, protocol int) (level, opt, words int, ok bool) {
	switch {
	case family == unix.AF_INET && protocol == unix.IPPROTO_ICMP:
		return unix.SOL_RAW, ICMPFilter, 1, true
	case family == unix.AF_INET6 && protocol == unix.IPPROTO_ICMPV6:
		return unix.SOL_ICMPV6, ICMPv6Filter, 8, true
	}
	return 0, 0, 0, false
}
