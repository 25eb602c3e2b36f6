package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The nf_tables values x/sys lacks: those of
// include/uapi/linux/netfilter/nf_tables.h but NF_DROP
// (include/uapi/linux/netfilter.h) and NF_IP_PRI_RAW
// (include/uapi/linux/netfilter_ipv4.h).
const (
	// NftTableFOwner is NFT_TABLE_F_OWNER (Linux >= 5.12): the table
	// belongs to the netlink socket that made it, which alone may change
	// it, and the kernel removes it when that socket closes.
	NftTableFOwner = 0x2
	// NftSetConcat is NFT_SET_CONCAT: the set's key is fields laid end
	// to end, which NftaSetDescConcat describes.
	NftSetConcat = 0x80
	// NftaSetDescConcat is NFTA_SET_DESC_CONCAT, in NFTA_SET_DESC: an
	// NFTA_LIST_ELEM per field of a concatenated key, holding its
	// NftaSetFieldLen.
	NftaSetDescConcat = 2
	// NftaSetFieldLen is NFTA_SET_FIELD_LEN: the length of a field, in
	// bytes (the header says bits; the kernel and nft count bytes).
	NftaSetFieldLen = 1
	// NfDrop is NF_DROP, the verdict that drops a packet.
	NfDrop = 0
	// NfIPPriRaw is NF_IP_PRI_RAW, the priority of a chain that sees
	// packets before conntrack does.
	NfIPPriRaw = -300
)

// nfgenmsg is struct nfgenmsg (include/uapi/linux/netfilter/nfnetlink.h),
// which begins every nfnetlink message: family, version, and the resource
// id in network order.
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

const nfgenmsgLen = 4

// NftSocket is a NETLINK_NETFILTER socket talking to nf_tables. A table
// it makes with NftTableFOwner goes when it closes.
type NftSocket struct {
	fd  int
	seq uint32 // the sequence number of the last message
}

// OpenNftSocket opens an NftSocket.
func OpenNftSocket() (*NftSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	// An error echoes the header of the message that failed, not the
	// whole message: a NEWSETELEM's is up to 64 KiB.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
	}
	return &NftSocket{fd: fd}, nil
}

// Close closes s.
func (s *NftSocket) Close() error { return unix.Close(s.fd) }

// SetBuffers sizes s's send and receive buffers, beyond the system's
// limits (wmem_max, rmem_max), as root may: a batch goes in one sendmsg,
// which fails if the send buffer is shorter, and the acknowledgements of
// its messages are all queued before they are read.
func (s *NftSocket) SetBuffers(send, receive int) error {
	if err := errors.Join(
		unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, send),
		unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receive)); err != nil {
		return fmt.Errorf("set socket buffers to %d and %d bytes: %w", send, receive, err)
	}
	return nil
}

// NftBatch is nf_tables messages that the kernel applies all or none of,
// between NFNL_MSG_BATCH_BEGIN and NFNL_MSG_BATCH_END, each acknowledged.
// Add begins each message; the attribute methods append to the message
// begun last.
type NftBatch struct {
	nlBuffer
	s     *NftSocket
	first uint32 // the sequence number of NFNL_MSG_BATCH_BEGIN
}

// Batch begins a batch to send on s; size is about the bytes it will
// take, allocated at once.
func (s *NftSocket) Batch(size int) *NftBatch {
	s.seq++
	b := &NftBatch{nlBuffer: nlBuffer{b: make([]byte, 0, size)}, s: s, first: s.seq}
	b.begin(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, s.seq, nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
	return b
}

// Add begins a message of type typ (NFT_MSG_NEWTABLE...), with flags
// (NLM_F_CREATE...), about an object of family (NFPROTO_INET...).
func (b *NftBatch) Add(typ, flags uint16, family uint8) {
	b.s.seq++
	b.begin(unix.NFNL_SUBSYS_NFTABLES<<8|typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags, b.s.seq, nfgenmsg(family, 0))
}

// Commit sends b in one sendmsg and reads the acknowledgement of each of
// its messages. An error, the kernel's errno wrapped, means the kernel
// applied none of them.
func (s *NftSocket) Commit(b *NftBatch) error {
	s.seq++
	b.begin(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, s.seq, nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
	msgs, err := b.bytes()
	if err != nil {
		return err
	}
	if err := unix.Sendto(s.fd, msgs, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send batch of %d bytes: %w", len(msgs), err)
	}
	// The messages between the batch's begin and end, which all asked for
	// an acknowledgement; the kernel sends them all, an error or not.
	n := s.seq - b.first - 1
	var failed error
	// An acknowledgement is 36 bytes (NETLINK_CAP_ACK), one a datagram.
	buf := make([]byte, 4096)
	for pending := n; pending > 0; {
		d, err := recvNl(s.fd, buf)
		if err != nil {
			return fmt.Errorf("read acknowledgements: %w", err)
		}
		acks, err := ParseNlAcks(d)
		if err != nil {
			return fmt.Errorf("read acknowledgements: %w", err)
		}
		for _, a := range acks {
			i := a.Seq - b.first
			switch {
			case i == 0 && a.Errno != 0:
				// The batch failed as a whole: refused, or its commit
				// failed. The acknowledgements that follow are of
				// messages that passed, and are left unread: a later
				// batch has later sequence numbers.
				return fmt.Errorf("batch: %w", a.Errno)
			case i == 0 || i > n:
				// An earlier batch's, left unread.
				continue
			}
			pending--
			// They come in the batch's order: the first error is
			// the one that made the others, if any.
			if a.Errno != 0 && failed == nil {
				failed = fmt.Errorf("batch message %d of %d: %w", i, n, a.Errno)
			}
		}
	}
	return failed
}

// NftTable is what nf_tables says of a table.
type NftTable struct {
	Name  string
	Flags uint32 // NFT_TABLE_F_*
}

// errDumpInterrupted is a dump that the tables changed under
// (NLM_F_DUMP_INTR): what it returned is not one state of them. It is
// EINTR, as libmnl has it.
var errDumpInterrupted = fmt.Errorf("dump changed under it: %w", unix.EINTR)

// NftTables lists the tables of family (NFPROTO_INET...) in cryo's network
// namespace. A dump that a change interrupted is asked again, up to three
// times in all.
func NftTables(family uint8) ([]NftTable, error) {
	for try := 1; ; try++ {
		ts, err := nftTables(family)
		if errors.Is(err, errDumpInterrupted) && try < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list nf_tables tables: %w", err)
		}
		return ts, nil
	}
}

func nftTables(family uint8) ([]NftTable, error) {
	s, err := OpenNftSocket()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	req := append(Encode(nlmsgHeader{Len: nlmsgHeaderLen + nfgenmsgLen, Type: unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1}), nfgenmsg(family, 0)...)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var all []NftTable
	buf := make([]byte, 64<<10)
	for {
		d, err := recvNl(s.fd, buf)
		if err != nil {
			return nil, err
		}
		ts, done, err := ParseNftTables(d)
		if err != nil {
			return nil, err
		}
		all = append(all, ts...)
		if done {
			return all, nil
		}
	}
}

// ParseNftTables parses one read of the answer to an NFT_MSG_GETTABLE
// dump: the tables it holds, and whether it ends the answer (NLMSG_DONE).
// An NLMSG_ERROR message is returned as its errno.
func ParseNftTables(b []byte) (tables []NftTable, done bool, err error) {
	for len(b) > 0 {
		h, body, rest, err := nextNlMsg(b)
		if err != nil {
			return nil, false, err
		}
		b = rest
		if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
			return nil, false, errDumpInterrupted
		}
		switch h.Type {
		case unix.NLMSG_DONE, unix.NLMSG_ERROR:
			// Both hold an errno: the dump's, the request's.
			errno, err := nlErrno(body)
			switch {
			case err != nil:
				return nil, false, err
			case errno != 0:
				return nil, false, errno
			case h.Type == unix.NLMSG_ERROR:
				return nil, false, fmt.Errorf("%w: an acknowledgement in a dump", ErrNetlink)
			}
			return tables, true, nil
		case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE:
		default:
			return nil, false, fmt.Errorf("%w: message type %#x", ErrNetlink, h.Type)
		}
		t, err := parseNftTable(body)
		if err != nil {
			return nil, false, err
		}
		tables = append(tables, t)
	}
	return tables, false, nil
}

// parseNftTable parses the payload of an NFT_MSG_NEWTABLE message.
func parseNftTable(b []byte) (NftTable, error) {
	var t NftTable
	if len(b) < nfgenmsgLen {
		return t, fmt.Errorf("%w: table message of %d bytes", ErrNetlink, len(b))
	}
	named := false
	err := ParseNlAttrs(b[nfgenmsgLen:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_TABLE_NAME:
			if len(v) == 0 || v[len(v)-1] != 0 {
				return fmt.Errorf("%w: table name %q not terminated", ErrNetlink, v)
			}
			t.Name, named = string(v[:len(v)-1]), true
		case unix.NFTA_TABLE_FLAGS:
			if len(v) != 4 {
				return fmt.Errorf("%w: table flags of %d bytes", ErrNetlink, len(v))
			}
			t.Flags = binary.BigEndian.Uint32(v)
		}
		return nil
	})
	if err == nil && !named {
		err = fmt.Errorf("%w: table without a name", ErrNetlink)
	}
	return t, err
}
