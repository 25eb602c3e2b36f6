package kernel

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Packets for a raw socket of IPPROTO_RAW, which sends them with the
// headers given: an IPv4 header (struct iphdr, include/uapi/linux/ip.h;
// the kernel fills its length, id and checksum) or an IPv6 one (struct
// ipv6hdr, include/uapi/linux/ipv6.h), then the transport header with its
// checksum. src and dst must be of one family.

// UDPPacket returns the IP datagram that carries payload from src to dst
// over UDP (struct udphdr, include/uapi/linux/udp.h). payload must fit a
// datagram.
func UDPPacket(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	return ipPacket(src.Addr(), dst.Addr(), unix.IPPROTO_UDP, udp, 6)
}

// TCP header flags (struct tcphdr, include/uapi/linux/tcp.h).
const (
	tcpFlagFin = 0x01
	tcpFlagAck = 0x10
)

// TCPFin returns the IP packet of a TCP segment from src to dst with no
// data and no options, only FIN and ACK: sequence number seq, ack and
// window (unscaled) as given (struct tcphdr, include/uapi/linux/tcp.h).
func TCPFin(src, dst netip.AddrPort, seq, ack uint32, window uint16) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4 // 5 words, no options
	tcp[13] = tcpFlagFin | tcpFlagAck
	binary.BigEndian.PutUint16(tcp[14:], window)
	return ipPacket(src.Addr(), dst.Addr(), unix.IPPROTO_TCP, tcp, 16)
}

// ipPacket returns the transport segment l4 of protocol proto from src to
// dst behind its IP header, its checksum, at byte sum of l4, set.
func ipPacket(src, dst netip.Addr, proto byte, l4 []byte, sum int) []byte {
	// The checksum covers a pseudo-header of the addresses, the
	// protocol and the length, then the segment.
	pseudo := append(src.AsSlice(), dst.AsSlice()...)
	pseudo = append(pseudo, 0, proto)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
	c := ^fold(add(add(0, pseudo), l4))
	if c == 0 && proto == unix.IPPROTO_UDP {
		c = 0xffff // 0 is no checksum for UDP
	}
	binary.BigEndian.PutUint16(l4[sum:], c)
	if src.Is4() {
		ip := make([]byte, 20, 20+len(l4))
		ip[0] = 0x45 // version 4, 5 words
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8], ip[9] = 64, proto // TTL
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, l4...)
	}
	ip := make([]byte, 40, 40+len(l4))
	ip[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = proto, 64 // hop limit
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, l4...)
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
