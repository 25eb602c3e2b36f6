package image

import (
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// SockExtra is what a socket holds beyond the entry CRIU's images have
// for it, which cryo keeps in an image of its own, cryo-sk-extra.img, one
// record per socket entry of files.img that has any: its peek offset
// (SO_PEEK_OFF; -1, the kernel's default, when it has none), the
// multicast groups a UDP socket joined, and a TCP socket's options that
// CRIU's tcp_opts lack, each 0 when not set (the kernel's default).
type SockExtra struct {
	// ID is the socket's files.img entry.
	ID      uint32
	PeekOff int32
	Groups  []McastGroup
	// TCPFastOpen is a listener's queue of connections opened with
	// their first data (TCP_FASTOPEN).
	TCPFastOpen uint32
	// TCPDeferAccept is the seconds a listener waits for a connection's
	// first data before accepting it (TCP_DEFER_ACCEPT).
	TCPDeferAccept uint32
	// TCPUserTimeout is the milliseconds data may stay unacknowledged
	// before the connection is dropped (TCP_USER_TIMEOUT).
	TCPUserTimeout uint32
	// Opts are more options the socket set, which sk_opts_entry has no
	// field for (timestamps, IP_RECVERR...), each its level and name.
	Opts []SockOpt
}

// SockOpt is a socket option set to Value, at level Level
// (setsockopt(2)'s SOL_SOCKET, SOL_IP...).
type SockOpt struct {
	Level, Name uint32
	Value       int32
}

// McastGroup is a multicast group joined on a network interface.
type McastGroup struct {
	Ifindex uint32
	Group   netip.Addr
}

// sockExtraType is the message type of cryo-sk-extra.img records,
// cryo.sk_extra_entry: each group's interface and address in two lists
// of one length.
var sockExtraType = func() protoreflect.MessageType {
	req, rep, opt := descriptorpb.FieldDescriptorProto_LABEL_REQUIRED, descriptorpb.FieldDescriptorProto_LABEL_REPEATED, descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	return ownMessage("sk-extra", "sk_extra_entry",
		ownField("id", 1, descriptorpb.FieldDescriptorProto_TYPE_UINT32, req),
		ownField("peek_off", 2, descriptorpb.FieldDescriptorProto_TYPE_INT32, req),
		ownField("mcast_ifindex", 3, descriptorpb.FieldDescriptorProto_TYPE_UINT32, rep),
		ownField("mcast_group", 4, descriptorpb.FieldDescriptorProto_TYPE_BYTES, rep),
		ownField("tcp_fastopen", 5, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt),
		ownField("tcp_defer_accept", 6, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt),
		ownField("tcp_user_timeout", 7, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt),
		ownField("opt_level", 8, descriptorpb.FieldDescriptorProto_TYPE_UINT32, rep),
		ownField("opt_name", 9, descriptorpb.FieldDescriptorProto_TYPE_UINT32, rep),
		ownField("opt_value", 10, descriptorpb.FieldDescriptorProto_TYPE_INT32, rep))
}()

// sockExtraTCPOpts are the fields of SockExtra's TCP options.
var sockExtraTCPOpts = []struct {
	name  protoreflect.Name
	field func(*SockExtra) *uint32
}{
	{"tcp_fastopen", func(s *SockExtra) *uint32 { return &s.TCPFastOpen }},
	{"tcp_defer_accept", func(s *SockExtra) *uint32 { return &s.TCPDeferAccept }},
	{"tcp_user_timeout", func(s *SockExtra) *uint32 { return &s.TCPUserTimeout }},
}

func (s SockExtra) message() proto.Message {
	m := sockExtraType.New()
	f := m.Descriptor().Fields()
	m.Set(f.ByName("id"), protoreflect.ValueOfUint32(s.ID))
	m.Set(f.ByName("peek_off"), protoreflect.ValueOfInt32(s.PeekOff))
	ifs, groups := m.Mutable(f.ByName("mcast_ifindex")).List(), m.Mutable(f.ByName("mcast_group")).List()
	for _, g := range s.Groups {
		ifs.Append(protoreflect.ValueOfUint32(g.Ifindex))
		groups.Append(protoreflect.ValueOfBytes(g.Group.AsSlice()))
	}
	for _, o := range sockExtraTCPOpts {
		if v := *o.field(&s); v != 0 {
			m.Set(f.ByName(o.name), protoreflect.ValueOfUint32(v))
		}
	}
	levels, names, values := m.Mutable(f.ByName("opt_level")).List(), m.Mutable(f.ByName("opt_name")).List(), m.Mutable(f.ByName("opt_value")).List()
	for _, o := range s.Opts {
		levels.Append(protoreflect.ValueOfUint32(o.Level))
		names.Append(protoreflect.ValueOfUint32(o.Name))
		values.Append(protoreflect.ValueOfInt32(o.Value))
	}
	return m.Interface()
}

func sockExtraOf(m protoreflect.Message) (SockExtra, error) {
	f := m.Descriptor().Fields()
	s := SockExtra{ID: uint32(m.Get(f.ByName("id")).Uint()), PeekOff: int32(m.Get(f.ByName("peek_off")).Int())}
	if s.PeekOff < -1 {
		return s, fmt.Errorf("%w: socket %d: peek offset %d", ErrRecord, s.ID, s.PeekOff)
	}
	ifs, groups := m.Get(f.ByName("mcast_ifindex")).List(), m.Get(f.ByName("mcast_group")).List()
	if ifs.Len() != groups.Len() {
		return s, fmt.Errorf("%w: socket %d: %d interfaces for %d multicast groups", ErrRecord, s.ID, ifs.Len(), groups.Len())
	}
	for i := range ifs.Len() {
		a, ok := netip.AddrFromSlice(groups.Get(i).Bytes())
		if !ok || !a.IsMulticast() {
			return s, fmt.Errorf("%w: socket %d: multicast group %x", ErrRecord, s.ID, groups.Get(i).Bytes())
		}
		s.Groups = append(s.Groups, McastGroup{uint32(ifs.Get(i).Uint()), a})
	}
	for _, o := range sockExtraTCPOpts {
		*o.field(&s) = uint32(m.Get(f.ByName(o.name)).Uint())
	}
	levels, names, values := m.Get(f.ByName("opt_level")).List(), m.Get(f.ByName("opt_name")).List(), m.Get(f.ByName("opt_value")).List()
	if levels.Len() != names.Len() || names.Len() != values.Len() {
		return s, fmt.Errorf("%w: socket %d: options of %d levels, %d names and %d values", ErrRecord, s.ID, levels.Len(), names.Len(), values.Len())
	}
	for i := range levels.Len() {
		s.Opts = append(s.Opts, SockOpt{Level: uint32(levels.Get(i).Uint()), Name: uint32(names.Get(i).Uint()), Value: int32(values.Get(i).Int())})
	}
	return s, nil
}

// WriteSockExtras writes cryo-sk-extra.img.
func (d *Dir) WriteSockExtras(extras []SockExtra) error {
	return writeOwn(d, SockExtras, extras, SockExtra.message)
}

// ReadSockExtras reads cryo-sk-extra.img; a checkpoint without it (one
// CRIU made, or an older cryo) gives an error wrapping fs.ErrNotExist.
func (d *Dir) ReadSockExtras() ([]SockExtra, error) {
	return readOwn(d, SockExtras, sockExtraType, sockExtraOf)
}
