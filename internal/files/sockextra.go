package files

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// What a socket holds that CRIU's entries have no field for goes into
// cryo's own cryo-sk-extra.img (image.SockExtra): a unix or UDP socket's
// peek offset (SO_PEEK_OFF), the multicast groups a UDP socket joined,
// and the TCP options tcpExtraOpts.

// sockExtraTable gathers a dump's socket extras, by entry id.
type sockExtraTable struct {
	extras []image.SockExtra
	// mcastGroups are the multicast groups joined in the network
	// namespace, read for the first UDP socket (mcastRead).
	mcastGroups []proc.McastGroup
	mcastRead   bool
}

// extra returns the extras of socket entry id, made on first use.
func (t *sockExtraTable) extra(id uint32) *image.SockExtra {
	i := slices.IndexFunc(t.extras, func(x image.SockExtra) bool { return x.ID == id })
	if i < 0 {
		t.extras = append(t.extras, image.SockExtra{ID: id, PeekOff: -1})
		i = len(t.extras) - 1
	}
	return &t.extras[i]
}

func (t *sockExtraTable) write(dir *image.Dir) error { return dir.WriteSockExtras(t.extras) }

// dumpPeekOff records the peek offset of socket fd, entry id, if it has
// one, and returns it, for the caller to set back after its own peeks.
func (t *sockExtraTable) dumpPeekOff(fd int, id uint32) (int, error) {
	off, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return 0, fmt.Errorf("read peek offset: %w", err)
	}
	if off != -1 {
		t.extra(id).PeekOff = int32(off)
	}
	return off, nil
}

// dumpMemberships records the multicast groups UDP socket fd, entry id,
// joined. Which groups a socket joined the kernel lists nowhere, but it
// answers for each group that some socket joined (/proc/net/igmp and
// igmp6). A membership that filters its sources is refused.
func (t *sockExtraTable) dumpMemberships(fd int, id, family uint32, local netip.AddrPort) error {
	if !t.mcastRead {
		groups, err := proc.ReadMcastGroups()
		if err != nil {
			return err
		}
		t.mcastGroups, t.mcastRead = groups, true
	}
	for _, g := range t.mcastGroups {
		level := unix.SOL_IP
		switch {
		case g.Group.Is4() && family != unix.AF_INET, g.Group.Is6() && family != unix.AF_INET6:
			continue
		case g.Group.Is6():
			level = unix.SOL_IPV6
		}
		mode, sources, member, err := kernel.McastFilter(fd, level, g.Ifindex, g.Group)
		switch {
		case err != nil:
			return fmt.Errorf("UDP socket %v: %w", local, err)
		case !member:
			continue
		case mode != unix.MCAST_EXCLUDE || sources != 0:
			return fmt.Errorf("%w: UDP socket %v joined multicast group %v on interface %d for some sources only (%d, mode %d): a checkpoint cannot hold source filters", ErrUnsupported, local, g.Group, g.Ifindex, sources, mode)
		}
		x := t.extra(id)
		x.Groups = append(x.Groups, image.McastGroup{Ifindex: uint32(g.Ifindex), Group: g.Group})
	}
	return nil
}

// tcpExtraOpts are the TCP options kept in cryo-sk-extra.img, each 0
// unless set: a listener's (dnsmasq sets TCP_FASTOPEN on its own; nginx's
// and haproxy's take them from their configurations) and
// TCP_USER_TIMEOUT, any socket's.
var tcpExtraOpts = []struct {
	opt   int
	name  string
	field func(*image.SockExtra) *uint32
}{
	{unix.TCP_FASTOPEN, "TCP_FASTOPEN", func(x *image.SockExtra) *uint32 { return &x.TCPFastOpen }},
	{unix.TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", func(x *image.SockExtra) *uint32 { return &x.TCPDeferAccept }},
	{unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", func(x *image.SockExtra) *uint32 { return &x.TCPUserTimeout }},
}

// dumpTCPOpts records the tcpExtraOpts TCP or MPTCP socket fd, entry id,
// in state state, has set. TCP_FASTOPEN can be set again only on a
// socket listening or not connected yet; a connection's is refused (an
// accepted one has none).
//
// A socket with an upper-layer protocol attached (TCP_ULP) other than
// MPTCP's own subflow one is refused: kernel TLS's keys and record
// sequence numbers the kernel does not give back, and a socket made again
// without it would send its data in the clear.
func (t *sockExtraTable) dumpTCPOpts(fd int, id, state uint32) error {
	switch ulp, err := unix.GetsockoptString(fd, unix.SOL_TCP, unix.TCP_ULP); {
	case err != nil && !notForThisSocket(err):
		return fmt.Errorf("read TCP_ULP: %w", err)
	case err == nil && ulp != "" && ulp != "mptcp":
		return fmt.Errorf("%w: TCP socket with the upper-layer protocol %q (TCP_ULP) attached", ErrUnsupported, ulp)
	}
	for _, o := range tcpExtraOpts {
		v, err := unix.GetsockoptInt(fd, unix.SOL_TCP, o.opt)
		switch {
		case notForThisSocket(err) || err == nil && v == 0:
			continue
		case err != nil:
			return fmt.Errorf("read %s: %w", o.name, err)
		case o.opt == unix.TCP_FASTOPEN && state != tcpListen && state != tcpClose:
			return fmt.Errorf("%w: socket option %s is %d on a connection in state %s (it can be set only before one)", ErrUnsupported, o.name, v, tcpStateName(state))
		}
		*o.field(t.extra(id)) = uint32(v)
	}
	return nil
}

// sockExtraSet are the socket extras of a checkpoint, by entry id.
type sockExtraSet struct {
	sockExtras map[uint32]image.SockExtra
}

func (s *Set) loadSockExtras() error {
	extras, err := s.dir.ReadSockExtras()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.sockExtras = map[uint32]image.SockExtra{}
	for _, x := range extras {
		f := s.File(x.ID)
		switch {
		case f == nil || f.GetUsk() == nil && f.GetIsk() == nil && f.GetPsk() == nil:
			return imageErr("%s: file %d is not a socket entry", image.SockExtras.FileName(0), x.ID)
		case len(x.Groups) > 0 && f.GetIsk().GetProto() != unix.IPPROTO_UDP:
			return imageErr("%s: file %d joined multicast groups, but is no UDP socket", image.SockExtras.FileName(0), x.ID)
		case x.TCPFastOpen|x.TCPDeferAccept|x.TCPUserTimeout != 0 && (f.GetIsk() == nil || f.GetIsk().GetProto() != unix.IPPROTO_TCP && f.GetIsk().GetProto() != unix.IPPROTO_MPTCP):
			return imageErr("%s: file %d has TCP options, but is no TCP socket", image.SockExtras.FileName(0), x.ID)
		case len(x.Ifaces) > 0 && f.GetPsk() == nil:
			return imageErr("%s: file %d names network interfaces, but is no packet socket", image.SockExtras.FileName(0), x.ID)
		}
		family := int(f.GetIsk().GetFamily())
		switch {
		case f.GetPsk() != nil:
			family = unix.AF_PACKET
		case f.GetUsk() != nil:
			family = unix.AF_UNIX
		}
		for _, o := range x.Opts {
			if !isKeptOpt(family, int(o.Level), int(o.Name)) {
				return imageErr("%s: file %d has option %d of level %d, which cryo does not keep for its sockets", image.SockExtras.FileName(0), x.ID, o.Name, o.Level)
			}
		}
		if _, dup := s.sockExtras[x.ID]; dup {
			return imageErr("%s: file %d twice", image.SockExtras.FileName(0), x.ID)
		}
		s.sockExtras[x.ID] = x
	}
	return nil
}

// joinGroups makes socket fd, entry id, join the multicast groups it had.
func (s *Set) joinGroups(fd int, id uint32) error {
	for _, g := range s.sockExtras[id].Groups {
		var err error
		if g.Group.Is4() {
			err = unix.SetsockoptIPMreqn(fd, unix.SOL_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: g.Group.As4(), Ifindex: int32(g.Ifindex)})
		} else {
			err = unix.SetsockoptIPv6Mreq(fd, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: g.Group.As16(), Interface: g.Ifindex})
		}
		if err != nil {
			return fmt.Errorf("join multicast group %v on interface %d: %w", g.Group, g.Ifindex, err)
		}
	}
	return nil
}

// setTCPOpts gives socket fd, entry id, the tcpExtraOpts it had set:
// a listener once it listens.
func (s *Set) setTCPOpts(fd int, id uint32) error {
	x := s.sockExtras[id]
	for _, o := range tcpExtraOpts {
		if v := *o.field(&x); v != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_TCP, o.opt, int(v)); err != nil {
				return fmt.Errorf("set %s to %d: %w", o.name, v, err)
			}
		}
	}
	return nil
}

// setPeekOff gives socket fd, entry id, the peek offset it had, once its
// queue is back.
func (s *Set) setPeekOff(fd int, id uint32) error {
	x, ok := s.sockExtras[id]
	if !ok || x.PeekOff == -1 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, int(x.PeekOff)); err != nil {
		return fmt.Errorf("set peek offset %d: %w", x.PeekOff, err)
	}
	return nil
}

// keptOpts are the options on/off (or small values) of inet, unix and
// packet sockets that CRIU's entries have no field for, kept in
// cryo-sk-extra.img when set: what ping sets (timestamps, errors and TTLs
// with its replies) and their kin; rsyslog's log socket has timestamps.
var keptOpts = []keptOpt{
	{0, unix.SOL_SOCKET, unix.SO_TIMESTAMP_OLD, "SO_TIMESTAMP"},
	{0, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_OLD, "SO_TIMESTAMPNS"},
	// chronyd's NTP socket's; flags only (an int sets them).
	{0, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_OLD, "SO_TIMESTAMPING"},
	{unix.AF_INET, unix.SOL_IP, unix.IP_RECVERR, "IP_RECVERR"},
	{unix.AF_INET, unix.SOL_IP, unix.IP_RECVTTL, "IP_RECVTTL"},
	{unix.AF_INET, unix.SOL_IP, unix.IP_RECVTOS, "IP_RECVTOS"},
	{unix.AF_INET, unix.SOL_IP, unix.IP_RETOPTS, "IP_RETOPTS"},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_RECVERR, "IPV6_RECVERR"},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT"},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_RECVTCLASS, "IPV6_RECVTCLASS"},
	// A TCP socket's: what is left to read, told with each read.
	{0, unix.SOL_TCP, unix.TCP_INQ, "TCP_INQ"},
	// A packet socket's, which packet_sock_entry lacks: frames sent past
	// the qdisc layer, its own sent frames not seen, and a transmit
	// ring's frames with their data at an offset of their own.
	{unix.AF_PACKET, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"},
	{unix.AF_PACKET, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"},
	{unix.AF_PACKET, unix.SOL_PACKET, unix.PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF"},
}

// keptOpt is an option of keptOpts; family 0 is any.
type keptOpt struct {
	family, level, opt int
	name               string
}

// keptOptChecks refuse values of keptOpts, by level and option, that the
// restore cannot give back whole.
var keptOptChecks = map[[2]int]func(fd, v int) error{
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPING_OLD}: checkTimestamping,
}

// checkTimestamping refuses SO_TIMESTAMPING flags v of socket fd that
// carry state besides the flags: the counter of OPT_ID, the clock of
// BIND_PHC, and transmit timestamps waiting in the error queue, which no
// interface reads without taking them.
func checkTimestamping(fd, v int) error {
	if lost := v & (unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_ID_TCP | unix.SOF_TIMESTAMPING_BIND_PHC); lost != 0 {
		return fmt.Errorf("%w: SO_TIMESTAMPING flags %#x: a restore cannot give back their packet counter or clock", ErrUnsupported, lost)
	}
	p := []unix.PollFd{{Fd: int32(fd)}}
	if _, err := unix.Poll(p, 0); err != nil {
		return fmt.Errorf("poll for queued errors: %w", err)
	}
	if p[0].Revents&unix.POLLERR != 0 {
		return fmt.Errorf("%w: an error or a transmit timestamp is queued (SO_TIMESTAMPING), which cannot be read without taking it", ErrUnsupported)
	}
	return nil
}

// isKeptOpt reports whether option opt of level is one of keptOpts for
// sockets of family (0: any).
func isKeptOpt(family, level, opt int) bool {
	return slices.ContainsFunc(keptOpts, func(k keptOpt) bool {
		return k.level == level && k.opt == opt && (family == 0 || k.family == 0 || k.family == family)
	})
}

// dumpKeptOpts records the keptOpts socket fd of family, entry id, has
// set.
func (t *sockExtraTable) dumpKeptOpts(fd int, id uint32, family int) error {
	for _, k := range keptOpts {
		if k.family != 0 && k.family != family {
			continue
		}
		v, err := unix.GetsockoptInt(fd, k.level, k.opt)
		switch {
		case notForThisSocket(err) || err == nil && v == 0:
			continue
		case err != nil:
			return fmt.Errorf("read %s: %w", k.name, err)
		}
		if check := keptOptChecks[[2]int{k.level, k.opt}]; check != nil {
			if err := check(fd, v); err != nil {
				return err
			}
		}
		x := t.extra(id)
		x.Opts = append(x.Opts, image.SockOpt{Level: uint32(k.level), Name: uint32(k.opt), Value: int32(v)})
	}
	return nil
}

// setKeptOpts gives socket fd, entry id, the keptOpts it had set.
func (s *Set) setKeptOpts(fd int, id uint32) error {
	for _, o := range s.sockExtras[id].Opts {
		if err := unix.SetsockoptInt(fd, int(o.Level), int(o.Name), int(o.Value)); err != nil {
			return fmt.Errorf("set option %d of level %d to %d: %w", o.Name, o.Level, o.Value, err)
		}
	}
	return nil
}
