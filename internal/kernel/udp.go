package kernel

import (
	"encoding/binary"
	"net/netip"
)

// UDPPacket returns the IP datagram that carries payload from src to dst
// over UDP, for a raw socket of IPPROTO_RAW: an IPv4 header (struct iphdr,
// include/uapi/linux/ip.h; the kernel fills its length, id and checksum)
// or an IPv6 one (struct ipv6hdr, include/uapi/linux/ipv6.h), then
// struct udphdr (include/uapi/linux/udp.h) with its checksum. src and dst
// must be of one family, and payload fit a datagram.
func UDPPacket(src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := 8 + len(payload)
	udp := make([]byte, 8, udpLen)
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	udp = append(udp, payload...)
	// The checksum covers a pseudo-header of the addresses, the
	// protocol and the length, then the UDP header and payload.
	pseudo := append(src.Addr().AsSlice(), dst.Addr().AsSlice()...)
	pseudo = append(pseudo, 0, 17)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(udpLen))
	sum := ^fold(add(add(0, pseudo), udp))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	if src.Addr().Is4() {
		ip := make([]byte, 20)
		ip[0] = 0x45 // version 4, 5 words
		binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
		ip[8], ip[9] = 64, 17 // TTL, UDP
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, udp...)
	}
	ip := make([]byte, 40)
	ip[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
	ip[6], ip[7] = 17, 64 // UDP, hop limit
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, udp...)
}

// add adds b to the ones' complement sum, as 16-bit big-endian words.
func add(sum uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
