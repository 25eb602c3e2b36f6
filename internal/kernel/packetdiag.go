package kernel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// packetDiagReq mirrors struct packet_diag_req
// (include/uapi/linux/packet_diag.h), the request of SOCK_DIAG_BY_FAMILY
// for AF_PACKET.
type packetDiagReq struct {
	Family, Protocol uint8
	_                uint16
	Ino, Show        uint32
	Cookie           [2]uint32
}

// packetDiagMsg mirrors struct packet_diag_msg
// (include/uapi/linux/packet_diag.h), the answer's header for one socket:
// Num is the protocol, in host byte order.
type packetDiagMsg struct {
	Family, Type uint8
	Num          uint16
	Ino          uint32
	Cookie       [2]uint32
}

// PacketDiagInfo mirrors struct packet_diag_info
// (include/uapi/linux/packet_diag.h).
type PacketDiagInfo struct {
	// Index is the interface the socket is bound to, 0 for every one;
	// ^0 once that interface is gone.
	Index      uint32
	Version    uint32 // PACKET_VERSION
	Reserve    uint32 // PACKET_RESERVE
	CopyThresh uint32 // PACKET_COPY_THRESH
	Tstamp     uint32 // PACKET_TIMESTAMP
	Flags      uint32 // PDI*
}

// The bits of PacketDiagInfo.Flags (PDI_*).
const (
	PDIRunning = 0x1
	PDIAuxdata = 0x2
	PDIOrigdev = 0x4
	PDIVnethdr = 0x8
	PDILoss    = 0x10
)

// PacketDiagMclist mirrors struct packet_diag_mclist
// (include/uapi/linux/packet_diag.h): a membership (PACKET_ADD_MEMBERSHIP),
// added Count times.
type PacketDiagMclist struct {
	Index, Count uint32
	Type, Alen   uint16
	Addr         [32]byte // MAX_ADDR_LEN
}

// PacketDiagRing mirrors struct packet_diag_ring
// (include/uapi/linux/packet_diag.h).
type PacketDiagRing struct {
	BlockSize, BlockNr, FrameSize, FrameNr, RetireTmo, SizeofPriv, Features uint32
}

// The PACKET_SHOW_* bits of a request and the PACKET_DIAG_* attributes of
// an answer (include/uapi/linux/packet_diag.h).
const (
	packetShowInfo    = 0x1
	packetShowMclist  = 0x2
	packetShowRingCfg = 0x4
	packetShowFanout  = 0x8
	packetDiagInfo    = 0
	packetDiagMclist  = 1
	packetDiagRxRing  = 2
	packetDiagTxRing  = 3
	packetDiagFanout  = 4
)

// PacketDiag is what sock_diag says of one packet socket.
type PacketDiag struct {
	Ino uint32
	// Type is SOCK_RAW, SOCK_DGRAM or SOCK_PACKET.
	Type uint8
	// Protocol is the ethertype the socket takes, in network byte order
	// as the kernel keeps it (and socket(2) and sockaddr_ll take it).
	Protocol uint16
	Info     PacketDiagInfo
	Mclist   []PacketDiagMclist
	// RxRing and TxRing are the rings set up (PACKET_RX_RING,
	// PACKET_TX_RING), nil if none.
	RxRing, TxRing *PacketDiagRing
	// Fanout is the group's id and, above bit 16, its type, if the
	// socket is in one (PACKET_FANOUT; its flags sock_diag does not say).
	Fanout *uint32
}

// PacketDiagRequest returns the netlink message that asks for every packet
// socket with its settings, memberships, rings and fanout group.
func PacketDiagRequest(seq uint32) []byte {
	req := Encode(packetDiagReq{Family: unix.AF_PACKET,
		Show: packetShowInfo | packetShowMclist | packetShowRingCfg | packetShowFanout})
	h := Encode(nlmsgHeader{Len: uint32(nlmsgHeaderLen + len(req)), Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq})
	return append(h, req...)
}

// ParsePacketDiag parses a buffer of netlink messages answering
// PacketDiagRequest: the sockets it holds, and whether it ends the answer
// (NLMSG_DONE). An NLMSG_ERROR message is returned as its errno.
func ParsePacketDiag(b []byte) (socks []PacketDiag, done bool, err error) {
	return parseDiag(b, func(body []byte) (PacketDiag, error) {
		var m packetDiagMsg
		msgLen := binary.Size(m)
		if len(body) < msgLen {
			return PacketDiag{}, fmt.Errorf("%w: packet_diag_msg of %d bytes", ErrNetlink, len(body))
		}
		if err := Decode(body[:msgLen], &m); err != nil {
			return PacketDiag{}, err
		}
		return parsePacketDiagAttrs(m, body[msgLen:])
	})
}

// parsePacketDiagAttrs reads the attributes of the answer about socket m.
func parsePacketDiagAttrs(m packetDiagMsg, attrs []byte) (PacketDiag, error) {
	s := PacketDiag{Ino: m.Ino, Type: m.Type, Protocol: m.Num>>8 | m.Num<<8}
	var info bool
	err := ParseNlAttrs(attrs, func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case packetDiagInfo:
			info = true
			err = Decode(v, &s.Info)
		case packetDiagMclist:
			n := binary.Size(PacketDiagMclist{})
			if len(v)%n != 0 {
				err = fmt.Errorf("%d bytes, not a multiple of %d", len(v), n)
				break
			}
			s.Mclist = make([]PacketDiagMclist, len(v)/n)
			for i := range s.Mclist {
				if err = Decode(v[i*n:(i+1)*n], &s.Mclist[i]); err != nil {
					break
				}
				if s.Mclist[i].Alen > 32 {
					err = fmt.Errorf("address of %d bytes", s.Mclist[i].Alen)
				}
			}
		case packetDiagRxRing, packetDiagTxRing:
			r := new(PacketDiagRing)
			err = Decode(v, r)
			if typ == packetDiagRxRing {
				s.RxRing = r
			} else {
				s.TxRing = r
			}
		case packetDiagFanout:
			s.Fanout = new(uint32)
			err = Decode(v, s.Fanout)
		}
		if err != nil {
			return fmt.Errorf("%w: attribute %d: %w", ErrNetlink, typ, err)
		}
		return nil
	})
	if err == nil && !info {
		err = fmt.Errorf("%w: no packet_diag_info", ErrNetlink)
	}
	if err != nil {
		return s, fmt.Errorf("packet socket %d: %w", s.Ino, err)
	}
	return s, nil
}

// PacketDiagDump asks sock_diag for every packet socket of cryo's network
// namespace, by inode.
func PacketDiagDump() (map[uint32]PacketDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, PacketDiagRequest(1), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("ask sock_diag: %w", err)
	}
	all := map[uint32]PacketDiag{}
	buf := make([]byte, 64<<10)
	for {
		d, err := recvNl(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("read sock_diag: %w", err)
		}
		socks, done, err := ParsePacketDiag(d)
		if err != nil {
			return nil, fmt.Errorf("read sock_diag: %w", err)
		}
		for _, s := range socks {
			all[s.Ino] = s
		}
		if done {
			return all, nil
		}
	}
}

// PacketMreqMax mirrors struct packet_mreq (include/uapi/linux/if_packet.h)
// with room for an address of MAX_ADDR_LEN bytes, as the kernel reads
// PACKET_ADD_MEMBERSHIP's value (its struct packet_mreq_max).
type PacketMreqMax struct {
	Ifindex    int32
	Type, Alen uint16
	Address    [32]byte
}

// SetsockoptPacketMreqMax adds membership m to packet socket fd
// (PACKET_ADD_MEMBERSHIP).
func SetsockoptPacketMreqMax(fd int, m PacketMreqMax) error {
	return unix.SetsockoptString(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, string(Encode(m)))
}

// InterfaceName returns the name of network interface index in cryo's
// network namespace (SIOCGIFNAME); an error wrapping ENODEV if it has
// none of that index.
func InterfaceName(index uint32) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("name interface %d: %w", index, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return "", fmt.Errorf("name interface %d: %w", index, err)
	}
	ifr.SetUint32(index)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return "", fmt.Errorf("name interface %d: %w", index, err)
	}
	return ifr.Name(), nil
}
