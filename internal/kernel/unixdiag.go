package kernel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// unixDiagReq mirrors struct unix_diag_req in include/uapi/linux/unix_diag.h.
type unixDiagReq struct {
	Family   uint8
	Protocol uint8
	Pad      uint16
	States   uint32
	Ino      uint32
	Show     uint32
	Cookie   [2]uint32
}

// unixDiagMsg mirrors struct unix_diag_msg in include/uapi/linux/unix_diag.h.
type unixDiagMsg struct {
	Family uint8
	Type   uint8
	State  uint8
	Pad    uint8
	Ino    uint32
	Cookie [2]uint32
}

// unixDiagVfs mirrors struct unix_diag_vfs in include/uapi/linux/unix_diag.h.
type unixDiagVfs struct{ Ino, Dev uint32 }

// unixDiagRqlen mirrors struct unix_diag_rqlen in include/uapi/linux/unix_diag.h.
type unixDiagRqlen struct{ Rqueue, Wqueue uint32 }

// The UDIAG_SHOW_* bits and UNIX_DIAG_* attributes of
// include/uapi/linux/unix_diag.h, and SOCK_DIAG_BY_FAMILY of
// include/uapi/linux/sock_diag.h.
const (
	udiagShowName     = 0x01
	udiagShowVFS      = 0x02
	udiagShowPeer     = 0x04
	udiagShowIcons    = 0x08
	udiagShowRqlen    = 0x10
	udiagShowUID      = 0x40
	unixDiagName      = 0
	unixDiagVFS       = 1
	unixDiagPeer      = 2
	unixDiagIcons     = 3
	unixDiagRQLen     = 4
	unixDiagShutdown  = 6
	unixDiagUID       = 7
	unixDiagMsgLen    = 16
	unixDiagReqLength = 24
)

// UnixSock is what sock_diag says of a unix socket.
type UnixSock struct {
	Ino   uint32
	Type  uint8 // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	State uint8 // TCP_ESTABLISHED, TCP_LISTEN, TCP_CLOSE...
	// Name is the address it is bound to, as the kernel keeps it: a
	// path with its terminating zero byte, an abstract name starting
	// with one; nil if unbound.
	Name []byte
	// VFS is the inode the bound path's file is, when bound to a path.
	VFS *UnixVFS
	// Peer is the inode of the socket it is connected to, 0 if none or
	// if that is a connection not accepted yet (which has no inode).
	Peer uint32
	// Icons are, for a listening socket, the inodes of the clients of
	// the connections not accepted yet.
	Icons []uint32
	// Rqueue and Wqueue are, for a listening socket, the connections
	// waiting and the backlog; else the bytes queued to read (the first
	// datagram's alone for a datagram socket) and those sent not yet
	// read.
	Rqueue, Wqueue uint32
	// Shutdown is the sk_shutdown bits: RCV_SHUTDOWN 1, SEND_SHUTDOWN 2.
	Shutdown uint8
	UID      uint32
}

// UnixVFS is the file a unix socket is bound at: its inode and device
// (the kernel's internal dev_t encoding).
type UnixVFS struct{ Ino, Dev uint32 }

// UnixSockets asks the kernel (NETLINK_SOCK_DIAG) about every unix
// socket of cryo's network namespace, by inode.
func UnixSockets() (map[uint32]*UnixSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	req := Encode(nlmsgHeader{Len: nlmsgHeaderLen + unixDiagReqLength, Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1})
	req = append(req, Encode(unixDiagReq{Family: unix.AF_UNIX, States: ^uint32(0),
		Show: udiagShowName | udiagShowVFS | udiagShowPeer | udiagShowIcons | udiagShowRqlen | udiagShowUID})...)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("ask sock_diag: %w", err)
	}
	out := map[uint32]*UnixSock{}
	buf := make([]byte, 1<<16)
	for {
		d, err := recvNl(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("read sock_diag: %w", err)
		}
		socks, done, err := ParseUnixDiag(d)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			out[s.Ino] = s
		}
		if done {
			return out, nil
		}
	}
}

// ParseUnixDiag parses one read of sock_diag replies about unix sockets:
// netlink messages of unix_diag_msg and attributes. done says the dump
// ended (NLMSG_DONE); a netlink error is returned as the errno.
func ParseUnixDiag(b []byte) (socks []*UnixSock, done bool, err error) {
	return parseDiag(b, parseUnixDiagMsg)
}

// parseUnixDiagMsg parses a unix_diag_msg and its attributes.
func parseUnixDiagMsg(b []byte) (*UnixSock, error) {
	if len(b) < unixDiagMsgLen {
		return nil, fmt.Errorf("%w: unix_diag_msg of %d bytes", ErrNetlink, len(b))
	}
	var m unixDiagMsg
	if err := Decode(b[:unixDiagMsgLen], &m); err != nil {
		return nil, err
	}
	s := &UnixSock{Ino: m.Ino, Type: m.Type, State: m.State}
	err := ParseNlAttrs(b[unixDiagMsgLen:], func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case unixDiagName:
			s.Name = append([]byte{}, v...)
		case unixDiagVFS:
			s.VFS = &UnixVFS{}
			err = Decode(v, (*unixDiagVfs)(s.VFS))
		case unixDiagPeer:
			err = Decode(v, &s.Peer)
		case unixDiagIcons:
			if len(v)%4 != 0 {
				err = fmt.Errorf("%d bytes", len(v))
				break
			}
			s.Icons = make([]uint32, len(v)/4)
			for i := range s.Icons {
				s.Icons[i] = binary.LittleEndian.Uint32(v[i*4:])
			}
		case unixDiagRQLen:
			var q unixDiagRqlen
			err = Decode(v, &q)
			s.Rqueue, s.Wqueue = q.Rqueue, q.Wqueue
		case unixDiagShutdown:
			err = Decode(v, &s.Shutdown)
		case unixDiagUID:
			err = Decode(v, &s.UID)
		}
		if err != nil {
			return fmt.Errorf("%w: attribute %d: %w", ErrNetlink, typ, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("socket %d: %w", s.Ino, err)
	}
	return s, nil
}
