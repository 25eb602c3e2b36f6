package kernel

import (
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// nlmsgHeader mirrors struct nlmsghdr (include/uapi/linux/netlink.h).
type nlmsgHeader struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	Pid   uint32
}

// The sizes of struct nlmsghdr and struct nlattr.
const (
	nlmsgHeaderLen = 16
	nlaHdrLen      = 4
)

// nlmAlign is NLMSG_ALIGN and NLA_ALIGN: messages and attributes begin
// at multiples of 4 bytes.
func nlmAlign(n int) int { return (n + 3) &^ 3 }

// nlBuffer builds netlink messages (struct nlmsghdr,
// include/uapi/linux/netlink.h) and their attributes (struct nlattr) in one
// buffer, so that many of them go in one sendmsg. The length of a message
// and of a nested attribute is written when it ends.
type nlBuffer struct {
	b    []byte
	open bool  // a message is being built
	msg  int   // where it begins
	nest []int // where its nested attributes still open begin
	err  error // the first attribute longer than its 16-bit length
}

// begin ends the message being built, if any, and begins one of type typ
// whose payload starts with hdr, the family's header.
func (w *nlBuffer) begin(typ, flags uint16, seq uint32, hdr []byte) {
	w.end()
	w.open, w.msg = true, len(w.b)
	w.b = binary.NativeEndian.AppendUint32(w.b, 0)
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = binary.NativeEndian.AppendUint16(w.b, flags)
	w.b = binary.NativeEndian.AppendUint32(w.b, seq)
	// The port id of the destination: the kernel.
	w.b = binary.NativeEndian.AppendUint32(w.b, 0)
	w.b = append(w.b, hdr...)
	w.pad()
}

// end ends the message being built.
func (w *nlBuffer) end() {
	if w.open {
		binary.NativeEndian.PutUint32(w.b[w.msg:], uint32(len(w.b)-w.msg))
		w.open = false
	}
}

// bytes ends the message being built and returns all of them.
func (w *nlBuffer) bytes() ([]byte, error) {
	w.end()
	return w.b, w.err
}

func (w *nlBuffer) pad() {
	for len(w.b)%4 != 0 {
		w.b = append(w.b, 0)
	}
}

// attrHeader appends the header of an attribute of n bytes, header
// included.
func (w *nlBuffer) attrHeader(typ uint16, n int) {
	if n > math.MaxUint16 && w.err == nil {
		w.err = fmt.Errorf("netlink attribute %d of %d bytes, more than its length holds", typ, n)
	}
	w.b = binary.NativeEndian.AppendUint16(w.b, uint16(n))
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
}

// Attr appends an attribute holding v.
func (w *nlBuffer) Attr(typ uint16, v []byte) {
	w.attrHeader(typ, nlaHdrLen+len(v))
	w.b = append(w.b, v...)
	w.pad()
}

// AttrString appends an attribute holding s and a terminating zero byte
// (NLA_NUL_STRING, NLA_STRING).
func (w *nlBuffer) AttrString(typ uint16, s string) {
	w.attrHeader(typ, nlaHdrLen+len(s)+1)
	w.b = append(w.b, s...)
	w.b = append(w.b, 0)
	w.pad()
}

// AttrBE32 appends an attribute holding v in network byte order
// (NLA_BE32), as nf_tables takes its numbers.
func (w *nlBuffer) AttrBE32(typ uint16, v uint32) {
	w.attrHeader(typ, nlaHdrLen+4)
	w.b = binary.BigEndian.AppendUint32(w.b, v)
}

// Nest begins a nested attribute (NLA_F_NESTED): the attributes appended
// until EndNest are its value.
func (w *nlBuffer) Nest(typ uint16) {
	w.nest = append(w.nest, len(w.b))
	w.attrHeader(typ|unix.NLA_F_NESTED, 0)
}

// EndNest ends the nested attribute begun last.
func (w *nlBuffer) EndNest() {
	at := w.nest[len(w.nest)-1]
	w.nest = w.nest[:len(w.nest)-1]
	n := len(w.b) - at
	if n > math.MaxUint16 && w.err == nil {
		typ := binary.NativeEndian.Uint16(w.b[at+2:]) &^ unix.NLA_F_NESTED
		w.err = fmt.Errorf("netlink attribute %d of %d bytes, more than its length holds", typ, n)
	}
	binary.NativeEndian.PutUint16(w.b[at:], uint16(n))
}

// nextNlMsg splits the first netlink message off b: its header, its
// payload, and the messages after it.
func nextNlMsg(b []byte) (h nlmsgHeader, body, rest []byte, err error) {
	if len(b) < nlmsgHeaderLen {
		return h, nil, nil, fmt.Errorf("%w: %d bytes left, short of a header", ErrNetlink, len(b))
	}
	h = nlmsgHeader{
		Len:   binary.NativeEndian.Uint32(b),
		Type:  binary.NativeEndian.Uint16(b[4:]),
		Flags: binary.NativeEndian.Uint16(b[6:]),
		Seq:   binary.NativeEndian.Uint32(b[8:]),
		Pid:   binary.NativeEndian.Uint32(b[12:]),
	}
	if h.Len < nlmsgHeaderLen || uint64(h.Len) > uint64(len(b)) {
		return h, nil, nil, fmt.Errorf("%w: message of %d bytes in %d", ErrNetlink, h.Len, len(b))
	}
	return h, b[nlmsgHeaderLen:h.Len], b[min(nlmAlign(int(h.Len)), len(b)):], nil
}

// ParseNlAttrs calls fn with the type and the value of each attribute of
// b, a list of struct nlattr, in turn; the type without its flags
// (NLA_F_NESTED, NLA_F_NET_BYTEORDER). It stops at the first error, fn's
// or b's.
func ParseNlAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < nlaHdrLen {
			return fmt.Errorf("%w: %d bytes left, short of an attribute", ErrNetlink, len(b))
		}
		l, typ := int(binary.NativeEndian.Uint16(b)), binary.NativeEndian.Uint16(b[2:])
		if l < nlaHdrLen || l > len(b) {
			return fmt.Errorf("%w: attribute of %d bytes in %d", ErrNetlink, l, len(b))
		}
		if err := fn(typ&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[nlaHdrLen:l]); err != nil {
			return err
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	return nil
}

// NlAck is an NLMSG_ERROR message: the kernel's answer to a request that
// asked for one (NLM_F_ACK) or that failed.
type NlAck struct {
	// Seq is the request's sequence number.
	Seq uint32
	// Errno is why the request failed, 0 if it did not.
	Errno unix.Errno
}

// nlmsgerrLen is the size of struct nlmsgerr (include/uapi/linux/
// netlink.h) as the kernel sends it with NETLINK_CAP_ACK: the error, then
// the request's header without its payload.
const nlmsgerrLen = 4 + nlmsgHeaderLen

// nlErrno returns the errno that begins body, the payload of an
// NLMSG_ERROR or NLMSG_DONE message: 0 for a success.
func nlErrno(body []byte) (unix.Errno, error) {
	if len(body) < 4 {
		return 0, fmt.Errorf("%w: error of %d bytes", ErrNetlink, len(body))
	}
	// Negative; MAX_ERRNO is 4095.
	errno := int32(binary.NativeEndian.Uint32(body))
	if errno > 0 || errno < -4095 {
		return 0, fmt.Errorf("%w: error %d", ErrNetlink, errno)
	}
	return unix.Errno(-errno), nil
}

// ParseNlAcks parses one read of a netlink socket that holds
// acknowledgements alone.
func ParseNlAcks(b []byte) ([]NlAck, error) {
	var acks []NlAck
	for len(b) > 0 {
		h, body, rest, err := nextNlMsg(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if h.Type != unix.NLMSG_ERROR {
			return nil, fmt.Errorf("%w: message type %d, not an acknowledgement", ErrNetlink, h.Type)
		}
		if len(body) < nlmsgerrLen {
			return nil, fmt.Errorf("%w: error message of %d bytes", ErrNetlink, len(body))
		}
		errno, err := nlErrno(body)
		if err != nil {
			return nil, err
		}
		acks = append(acks, NlAck{Seq: h.Seq, Errno: errno})
	}
	return acks, nil
}

// recvNl reads one datagram of netlink messages into buf; one longer than
// buf, which the kernel would cut short, is an error.
func recvNl(fd int, buf []byte) ([]byte, error) {
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
	if err != nil {
		return nil, err
	}
	if n > len(buf) {
		return nil, fmt.Errorf("netlink datagram of %d bytes, longer than the %d read", n, len(buf))
	}
	return buf[:n], nil
}
