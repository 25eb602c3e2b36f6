package image

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// SockExtra is what a socket holds beyond the entry CRIU's images have
// for it, which cryo keeps in an image of its own, cryo-sk-extra.img, one
// record per socket entry of files.img that has any: its peek offset
// (SO_PEEK_OFF; -1, the kernel's default, when it has none), the
// multicast groups a UDP socket joined, a TCP socket's options that
// CRIU's tcp_opts lack, each 0 when not set (the kernel's default), and
// the interfaces a packet socket uses.
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
	// Ifaces are the network interfaces the socket names by index (a
	// packet socket's binding and memberships), with their names at the
	// dump, for the restore to check it finds the same ones.
	Ifaces []Iface
}

// Iface is a network interface, by index and name.
type Iface struct {
	Index uint32
	Name  string
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

// sockExtraTCPOpts are SockExtra's TCP options, each with its field of
// the record.
var sockExtraTCPOpts = []struct {
	field  func(*SockExtra) *uint32
	record func(*pb.SkExtraEntry) **uint32
}{
	{func(s *SockExtra) *uint32 { return &s.TCPFastOpen }, func(m *pb.SkExtraEntry) **uint32 { return &m.TcpFastopen }},
	{func(s *SockExtra) *uint32 { return &s.TCPDeferAccept }, func(m *pb.SkExtraEntry) **uint32 { return &m.TcpDeferAccept }},
	{func(s *SockExtra) *uint32 { return &s.TCPUserTimeout }, func(m *pb.SkExtraEntry) **uint32 { return &m.TcpUserTimeout }},
}

// message is s as a cryo.sk_extra_entry record: each group's interface
// and address in two lists of one length, each option's level, name and
// value in three.
func (s SockExtra) message() *pb.SkExtraEntry {
	m := &pb.SkExtraEntry{Id: s.ID, PeekOff: s.PeekOff}
	for _, g := range s.Groups {
		m.McastIfindex = append(m.McastIfindex, g.Ifindex)
		m.McastGroup = append(m.McastGroup, g.Group.AsSlice())
	}
	for _, o := range sockExtraTCPOpts {
		if v := *o.field(&s); v != 0 {
			*o.record(m) = pb.Uint32(v)
		}
	}
	for _, o := range s.Opts {
		m.OptLevel = append(m.OptLevel, o.Level)
		m.OptName = append(m.OptName, o.Name)
		m.OptValue = append(m.OptValue, o.Value)
	}
	for _, i := range s.Ifaces {
		m.IfIndex = append(m.IfIndex, i.Index)
		m.IfName = append(m.IfName, i.Name)
	}
	return m
}

func sockExtraOf(m *pb.SkExtraEntry) (SockExtra, error) {
	s := SockExtra{ID: m.GetId(), PeekOff: m.GetPeekOff()}
	if s.PeekOff < -1 {
		return s, fmt.Errorf("%w: socket %d: peek offset %d", ErrRecord, s.ID, s.PeekOff)
	}
	if len(m.McastIfindex) != len(m.McastGroup) {
		return s, fmt.Errorf("%w: socket %d: %d interfaces for %d multicast groups", ErrRecord, s.ID, len(m.McastIfindex), len(m.McastGroup))
	}
	for i, ifindex := range m.McastIfindex {
		a, ok := netip.AddrFromSlice(m.McastGroup[i])
		if !ok || !a.IsMulticast() {
			return s, fmt.Errorf("%w: socket %d: multicast group %x", ErrRecord, s.ID, m.McastGroup[i])
		}
		s.Groups = append(s.Groups, McastGroup{ifindex, a})
	}
	for _, o := range sockExtraTCPOpts {
		if v := *o.record(m); v != nil {
			*o.field(&s) = *v
		}
	}
	if len(m.OptLevel) != len(m.OptName) || len(m.OptName) != len(m.OptValue) {
		return s, fmt.Errorf("%w: socket %d: options of %d levels, %d names and %d values", ErrRecord, s.ID, len(m.OptLevel), len(m.OptName), len(m.OptValue))
	}
	for i := range m.OptLevel {
		s.Opts = append(s.Opts, SockOpt{Level: m.OptLevel[i], Name: m.OptName[i], Value: m.OptValue[i]})
	}
	if len(m.IfIndex) != len(m.IfName) {
		return s, fmt.Errorf("%w: socket %d: %d interface indexes for %d names", ErrRecord, s.ID, len(m.IfIndex), len(m.IfName))
	}
	for i, index := range m.IfIndex {
		// IFNAMSIZ holds the name and its terminating zero.
		if name := m.IfName[i]; index == 0 || name == "" || len(name) >= 16 || strings.ContainsAny(name, "/\x00") {
			return s, fmt.Errorf("%w: socket %d: interface %d named %q", ErrRecord, s.ID, index, name)
		}
		s.Ifaces = append(s.Ifaces, Iface{index, m.IfName[i]})
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
	return readOwn(d, SockExtras, sockExtraOf)
}
