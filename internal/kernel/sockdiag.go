package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// InetDiagSockID mirrors struct inet_diag_sockid
// (include/uapi/linux/inet_diag.h): ports and addresses in network byte
// order, an IPv4 address in the first 4 bytes of its array.
type InetDiagSockID struct {
	Sport, Dport [2]byte
	Src, Dst     [16]byte
	If           uint32
	Cookie       [2]uint32
}

// InetDiagReqV2 mirrors struct inet_diag_req_v2
// (include/uapi/linux/inet_diag.h), the request of SOCK_DIAG_BY_FAMILY
// for AF_INET and AF_INET6.
type InetDiagReqV2 struct {
	Family, Protocol, Ext, _ uint8
	States                   uint32
	ID                       InetDiagSockID
}

// InetDiagMsg mirrors struct inet_diag_msg
// (include/uapi/linux/inet_diag.h), the answer's header for one socket.
type InetDiagMsg struct {
	Family, State, Timer, Retrans uint8
	ID                            InetDiagSockID
	Expires                       uint32
	// Rqueue is what the receive queue holds; for a listener, the
	// connections waiting in its accept queue.
	Rqueue uint32
	// Wqueue is what the send queue holds; for a listener, its backlog.
	Wqueue uint32
	UID    uint32
	Inode  uint32
}

// inetDiagShutdown is INET_DIAG_SHUTDOWN (include/uapi/linux/inet_diag.h),
// the attribute that holds sk_shutdown, which every answer carries.
const inetDiagShutdown = 8

// The bits of sk_shutdown (include/net/sock.h), which CRIU's sk_shutdown
// enum has the values of.
const (
	RcvShutdown  = 1
	SendShutdown = 2
)

// InetDiag is what sock_diag says of one socket.
type InetDiag struct {
	InetDiagMsg
	// Shutdown is sk_shutdown: RcvShutdown and SendShutdown.
	Shutdown uint8
}

// Local and Remote are the socket's addresses.
func (d *InetDiag) Local() netip.AddrPort  { return d.ID.addrPort(d.Family, d.ID.Src, d.ID.Sport) }
func (d *InetDiag) Remote() netip.AddrPort { return d.ID.addrPort(d.Family, d.ID.Dst, d.ID.Dport) }

func (InetDiagSockID) addrPort(family uint8, a [16]byte, p [2]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(p[:])
	if family == unix.AF_INET {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a), port)
}

// inetDiagReqProtocol is INET_DIAG_REQ_PROTOCOL (include/uapi/linux/
// inet_diag.h): an attribute of a request holding its protocol as 32 bits,
// for a protocol above 255 (IPPROTO_MPTCP), which the request's own byte
// cannot hold.
const inetDiagReqProtocol = 3

// InetDiagRequest returns the netlink message that asks for every socket
// of family and protocol, in every state.
func InetDiagRequest(family uint8, protocol uint32, seq uint32) []byte {
	req := Encode(InetDiagReqV2{Family: family, Protocol: uint8(protocol), States: ^uint32(0)})
	if protocol > 0xff {
		// struct nlattr, then the protocol.
		req = binary.NativeEndian.AppendUint16(req, 8)
		req = binary.NativeEndian.AppendUint16(req, inetDiagReqProtocol)
		req = binary.NativeEndian.AppendUint32(req, protocol)
	}
	h := Encode(nlmsgHeader{Len: uint32(nlmsgHeaderLen + len(req)), Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq})
	return append(h, req...)
}

// ParseInetDiag parses a buffer of netlink messages answering
// InetDiagRequest: the sockets it holds, and whether it ends the answer
// (NLMSG_DONE). An NLMSG_ERROR message is returned as its errno.
func ParseInetDiag(b []byte) (socks []InetDiag, done bool, err error) {
	return parseDiag(b, func(body []byte) (InetDiag, error) {
		var d InetDiag
		msgLen := binary.Size(InetDiagMsg{})
		if len(body) < msgLen {
			return d, fmt.Errorf("%w: inet_diag_msg of %d bytes", ErrNetlink, len(body))
		}
		if err := Decode(body[:msgLen], &d.InetDiagMsg); err != nil {
			return d, err
		}
		err := ParseNlAttrs(body[min(nlmAlign(msgLen), len(body)):], func(typ uint16, v []byte) error {
			if typ == inetDiagShutdown && len(v) > 0 {
				d.Shutdown = v[0]
			}
			return nil
		})
		return d, err
	})
}

// parseDiag parses one read of sock_diag replies, each message's body
// with parse: the sockets they hold, and whether the dump ended
// (NLMSG_DONE). A netlink error is returned as its errno.
func parseDiag[T any](b []byte, parse func(body []byte) (T, error)) (socks []T, done bool, err error) {
	for len(b) > 0 {
		h, body, rest, err := nextNlMsg(b)
		if err != nil {
			return nil, false, err
		}
		b = rest
		switch h.Type {
		case unix.NLMSG_DONE:
			return socks, true, nil
		case unix.NLMSG_ERROR:
			errno, err := nlErrno(body)
			if err != nil {
				return nil, false, err
			}
			if errno != 0 {
				return nil, false, errno
			}
			continue
		case unix.SOCK_DIAG_BY_FAMILY:
		default:
			return nil, false, fmt.Errorf("%w: message type %d", ErrNetlink, h.Type)
		}
		s, err := parse(body)
		if err != nil {
			return nil, false, err
		}
		socks = append(socks, s)
	}
	return socks, false, nil
}

// InetDiagDump asks sock_diag for every socket of family and protocol
// (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_MPTCP...) in cryo's network namespace.
func InetDiagDump(family uint8, protocol uint32) ([]InetDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, InetDiagRequest(family, protocol, 1), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("ask sock_diag: %w", err)
	}
	var all []InetDiag
	buf := make([]byte, 64<<10)
	for {
		d, err := recvNl(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("read sock_diag: %w", err)
		}
		socks, done, err := ParseInetDiag(d)
		if err != nil {
			return nil, fmt.Errorf("read sock_diag: %w", err)
		}
		all = append(all, socks...)
		if done {
			return all, nil
		}
	}
}

// TCPRepairWindow mirrors struct tcp_repair_window
// (include/uapi/linux/tcp.h), TCP_REPAIR_WINDOW's value.
type TCPRepairWindow struct {
	SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32
}

// The TCP_REPAIR_QUEUE values and TCP_REPAIR's (include/uapi/linux/tcp.h).
const (
	TCPRecvQueue = 1
	TCPSendQueue = 2
	// TCPRepairOffNoProbe leaves repair mode without the window probe
	// TCP_REPAIR_OFF sends.
	TCPRepairOffNoProbe = -1
)

// GetTCPRepairWindow reads TCP_REPAIR_WINDOW of a socket in repair mode.
func GetTCPRepairWindow(fd int) (TCPRepairWindow, error) {
	var w TCPRepairWindow
	b := make([]byte, binary.Size(w))
	n, err := GetsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, b)
	if err != nil {
		return w, err
	}
	if err := Decode(b[:min(n, len(b))], &w); err != nil {
		return w, fmt.Errorf("%w: %w", ErrStructSize, err)
	}
	return w, nil
}

// SetTCPRepairWindow sets TCP_REPAIR_WINDOW of a socket in repair mode.
func SetTCPRepairWindow(fd int, w TCPRepairWindow) error {
	return unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, string(Encode(w)))
}

// TCPInfoHead mirrors the start of struct tcp_info
// (include/uapi/linux/tcp.h), which x/sys's TCPInfo skips where the
// window scales are, bit fields: tcpi_snd_wscale in the low 4 bits of
// Wscale, tcpi_rcv_wscale in the high 4.
type TCPInfoHead struct {
	State, CaState, Retransmits, Probes, Backoff, Options uint8
	Wscale, Flags                                         uint8
}

// The bits of tcpi_options (include/uapi/linux/tcp.h), which
// tcp_stream_entry's opt_mask holds.
const (
	TCPIOptTimestamps = 1
	TCPIOptSack       = 2
	TCPIOptWscale     = 4
)

// GetTCPInfoHead reads the start of TCP_INFO.
func GetTCPInfoHead(fd int) (TCPInfoHead, error) {
	var h TCPInfoHead
	b := make([]byte, binary.Size(h))
	n, err := GetsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_INFO, b)
	if err != nil {
		return h, err
	}
	if err := Decode(b[:min(n, len(b))], &h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrStructSize, err)
	}
	return h, nil
}

// InCryoNetns reports whether socket fd is of cryo's network namespace:
// sock_diag, asked from it, knows the sockets of that one only. The
// socket's namespace is what SIOCGSKNS (include/uapi/linux/sockios.h)
// opens.
func InCryoNetns(fd int) (bool, error) {
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return false, fmt.Errorf("open the network namespace of a socket: %w", err)
	}
	defer unix.Close(ns)
	var sock, own unix.Stat_t
	if err := unix.Fstat(ns, &sock); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		return false, err
	}
	return sock.Dev == own.Dev && sock.Ino == own.Ino, nil
}
