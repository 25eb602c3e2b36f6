package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// inetKind is a TCP or UDP socket, IPv4 or IPv6 (CRIU's inet_sk_entry):
// a TCP listener, a TCP socket not connected (bound or not), an
// established TCP connection (tcp.go), a UDP socket bound or connected
// with the datagrams queued to it (udp.go), a ping socket, or a raw
// socket (as ping makes when ping sockets are not allowed to it) with
// nothing queued. The dump reads it on cryo's
// duplicate of the process's socket and asks sock_diag what the socket
// itself cannot say (a listener's backlog, the shutdown state); the
// restore makes the socket as the process, sets it up as root (a
// privileged port it had bound it gets again), and gives it to the
// process.
type inetKind struct{}

// inet_sk_entry's state is the socket's TCP state (tcpEstablished...,
// unixsk.go); a UDP socket is TCP_ESTABLISHED when connected, else
// TCP_CLOSE. tcpStateNames names the states a socket is refused in.
var tcpStateNames = map[uint32]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
	7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

func tcpStateName(s uint32) string {
	if n, ok := tcpStateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state %d", s)
}

// inetProtos are the protocols of the sockets the kind claims, as
// sockfs names them (the system.sockprotoname attribute).
var inetProtos = map[string]bool{"TCP": true, "TCPv6": true, "UDP": true, "UDPv6": true, "MPTCP": true, "MPTCPv6": true,
	"PING": true, "PINGv6": true, "RAW": true, "RAWv6": true}

// isPing reports whether a socket of type typ and protocol is a ping
// socket (a datagram socket of ICMP echoes, as ping makes without
// privileges).
func isPing(typ, protocol int) bool {
	return typ == unix.SOCK_DGRAM && (protocol == unix.IPPROTO_ICMP || protocol == unix.IPPROTO_ICMPV6)
}

func (inetKind) typ() pb.FdTypes { return pb.FdTypes_INETSK }

func (inetKind) claims(d *desc) bool {
	return d.mode() == unix.S_IFSOCK && inetProtos[sockProtoName(d)]
}

// sockProtoName is the name sockfs gives the protocol of a socket
// descriptor ("TCP", "UNIXv6"... "UNIX", "NETLINK", "PACKET", "RAW"), ""
// if it has none.
func sockProtoName(d *desc) string {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(d.path, "system.sockprotoname", buf)
	if err != nil || n == 0 {
		return ""
	}
	name := buf[:n]
	for len(name) > 0 && name[len(name)-1] == 0 {
		name = name[:len(name)-1]
	}
	return string(name)
}

// inetTable is what the dump of inet sockets keeps: sock_diag's answers,
// asked once per family and protocol, and the established connections
// (tcp.go).
type inetTable struct {
	diag map[[2]uint32]map[uint32]kernel.InetDiag
	// SkipInFlight is criu's --skip-in-flight: the connections a TCP
	// listener has not accepted yet are left behind (the restored
	// listener's queue is empty; their clients, whose handshake is done,
	// find them reset when the dumped process ends), said through
	// Dropped. Without it such a listener is refused.
	SkipInFlight bool
	// Dropped is told of each listener whose connections were left
	// behind.
	Dropped func(listener netip.AddrPort, connections uint32)
	tcpTable
}

// diagOf returns what sock_diag says of socket ino of family and
// protocol, false if it does not list it.
func (t *inetTable) diagOf(family uint8, protocol uint32, ino uint32) (kernel.InetDiag, bool, error) {
	key := [2]uint32{uint32(family), protocol}
	if t.diag[key] == nil {
		socks, err := kernel.InetDiagDump(family, protocol)
		if err != nil {
			return kernel.InetDiag{}, false, err
		}
		if t.diag == nil {
			t.diag = map[[2]uint32]map[uint32]kernel.InetDiag{}
		}
		t.diag[key] = map[uint32]kernel.InetDiag{}
		for _, s := range socks {
			t.diag[key][s.Inode] = s
		}
	}
	s, ok := t.diag[key][ino]
	return s, ok, nil
}

// unlistedDiag stands for what sock_diag would say of socket fd, which
// it does not list: a socket never bound (nor connected or listening,
// which bind it) is in no table. Such a socket is CLOSE, of no address;
// its shutdown state is what poll says of it: RcvShutdown shows, and for
// UDP both bits together; SendShutdown alone on a TCP socket shows
// nowhere (CRIU does not keep it either). A socket of another network
// namespace than cryo's, or a connection that ended, is refused.
func unlistedDiag(fd, family, protocol int, ino uint64) (kernel.InetDiag, error) {
	sa, err := sockname(fd, ino)
	if err != nil {
		return kernel.InetDiag{}, err
	}
	if sockaddrPort(sa) != 0 {
		// A connection that ended (CLOSE after TIME_WAIT or LAST_ACK)
		// has given its port back but still says its address; a
		// restore could not make it again without taking the port.
		return kernel.InetDiag{}, fmt.Errorf("%w: socket %d was connected and is closed (it says a local port it no longer holds)", ErrUnsupported, ino)
	}
	d := kernel.InetDiag{InetDiagMsg: kernel.InetDiagMsg{Family: uint8(family), State: tcpClose, Inode: uint32(ino)}}
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	if _, err := unix.Poll(p, 0); err != nil {
		return kernel.InetDiag{}, fmt.Errorf("poll socket %d: %w", ino, err)
	}
	if p[0].Revents&unix.POLLRDHUP != 0 {
		d.Shutdown |= kernel.RcvShutdown
	}
	if protocol == unix.IPPROTO_UDP && p[0].Revents&unix.POLLHUP != 0 {
		d.Shutdown |= kernel.RcvShutdown | kernel.SendShutdown
	}
	return d, nil
}

// sockname returns the address of socket fd, which sock_diag does not
// list; one of another network namespace than cryo's is refused.
func sockname(fd int, ino uint64) (unix.Sockaddr, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("read the address of socket %d: %w", ino, err)
	}
	same, err := kernel.InCryoNetns(fd)
	if err != nil {
		return nil, fmt.Errorf("socket %d: %w", ino, err)
	}
	if sa == nil || !same {
		return nil, fmt.Errorf("%w: socket %d is not in cryo's network namespace (sock_diag does not know it)", ErrUnsupported, ino)
	}
	return sa, nil
}

// probeDiag is what sock_diag would say of ping or raw socket fd (what
// names it in errors), which it does not list: its address and id or
// protocol (its port), the peer it is connected to, if any, and whether
// something waits to be read. An error queued (with IP_RECVERR), which no
// interface reads without taking it, is refused.
func probeDiag(fd, family int, ino uint64, what string) (kernel.InetDiag, error) {
	sa, err := sockname(fd, ino)
	if err != nil {
		return kernel.InetDiag{}, err
	}
	d := kernel.InetDiag{InetDiagMsg: kernel.InetDiagMsg{Family: uint8(family), State: tcpClose, Inode: uint32(ino)}}
	putSockaddr(&d.ID.Src, &d.ID.Sport, sa)
	switch peer, err := unix.Getpeername(fd); {
	case err == nil:
		d.State = tcpEstablished
		putSockaddr(&d.ID.Dst, &d.ID.Dport, peer)
	case !errors.Is(err, unix.ENOTCONN):
		return kernel.InetDiag{}, fmt.Errorf("read the peer of %s %d: %w", what, ino, err)
	}
	// Ping sockets answer no ioctl: a packet waiting makes the socket
	// readable, which Rqueue says as 1.
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(p, 0); err != nil {
		return kernel.InetDiag{}, fmt.Errorf("poll %s %d: %w", what, ino, err)
	}
	if p[0].Revents&unix.POLLIN != 0 {
		d.Rqueue = 1
	}
	if p[0].Revents&unix.POLLERR != 0 {
		return kernel.InetDiag{}, fmt.Errorf("%w: %s %d has an error queued (IP_RECVERR), which cannot be read without taking it", ErrUnsupported, what, ino)
	}
	return d, nil
}

// putSockaddr writes the address and port of sa as sock_diag gives them.
func putSockaddr(addr *[16]byte, port *[2]byte, sa unix.Sockaddr) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		copy(addr[:], a.Addr[:])
		binary.BigEndian.PutUint16(port[:], uint16(a.Port))
	case *unix.SockaddrInet6:
		*addr = a.Addr
		binary.BigEndian.PutUint16(port[:], uint16(a.Port))
	}
}

// sockaddrPort is the port of an IPv4 or IPv6 address, 0 for another.
func sockaddrPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

func (inetKind) dump(t *Table, d *desc) (uint32, error) {
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(fd)
		}
	}()
	var v [3]int
	for i, opt := range []int{unix.SO_DOMAIN, unix.SO_TYPE, unix.SO_PROTOCOL} {
		if v[i], err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err != nil {
			return 0, fmt.Errorf("read socket family and type: %w", err)
		}
	}
	family, typ, protocol := v[0], v[1], v[2]
	raw := typ == unix.SOCK_RAW
	var diag kernel.InetDiag
	switch {
	case raw:
		diag, err = probeDiag(fd, family, d.st.Ino, "raw socket")
	case isPing(typ, protocol):
		diag, err = probeDiag(fd, family, d.st.Ino, "ping socket")
	default:
		var listed bool
		diag, listed, err = t.diagOf(uint8(family), uint32(protocol), uint32(d.st.Ino))
		if err == nil && !listed {
			diag, err = unlistedDiag(fd, family, protocol, d.st.Ino)
		}
	}
	if err != nil {
		return 0, err
	}
	local, remote := diag.Local(), diag.Remote()
	if local.Addr().Is6() && local.Addr().IsLinkLocalUnicast() {
		return 0, fmt.Errorf("%w: socket bound to the link-local address %v", ErrUnsupported, local)
	}
	opts, err := DumpSockOpts(fd, true)
	if err != nil {
		return 0, err
	}
	id := t.nextID()
	e := &pb.InetSkEntry{
		Id: id, Ino: uint32(d.st.Ino),
		Family: uint32(family), Type: uint32(typ), Proto: uint32(protocol),
		State:   uint32(diag.State),
		SrcPort: uint32(local.Port()), DstPort: uint32(remote.Port()),
		Flags: statusFlags(d.info), Backlog: 0,
		SrcAddr: addrWords(local.Addr()), DstAddr: addrWords(remote.Addr()),
		Fown: &pb.FownEntry{}, Opts: opts,
	}
	if diag.Shutdown != 0 {
		e.Shutdown = pb.SkShutdown(diag.Shutdown).Enum()
	}
	if err := dumpInetOpts(fd, e); err != nil {
		return 0, err
	}
	if err := t.dumpKeptOpts(fd, id, family); err != nil {
		return 0, err
	}
	state := e.GetState()
	stream := typ == unix.SOCK_STREAM
	if stream {
		if err := t.dumpTCPOpts(fd, id, state); err != nil {
			return 0, err
		}
	}
	switch {
	case raw && (state == tcpClose || state == tcpEstablished):
		// What a raw socket has queued came from the network or the
		// kernel: sent again from cryo it would reach every raw socket
		// of its protocol, and the kernel would act on it (answer an
		// echo request).
		if diag.Rqueue != 0 {
			return 0, fmt.Errorf("%w: raw socket %v of protocol %d holds a packet not read yet", ErrUnsupported, local.Addr(), protocol)
		}
	case stream && state == tcpListen:
		switch {
		case diag.Rqueue != 0 && !t.SkipInFlight:
			return 0, fmt.Errorf("%w: %s listener %v with %d connections not accepted yet (criu's --skip-in-flight leaves them behind)", ErrUnsupported, protoName(protocol), local, diag.Rqueue)
		case diag.Rqueue != 0 && t.Dropped != nil:
			t.Dropped(local, diag.Rqueue)
		}
		e.Backlog = diag.Wqueue
	case stream && state == tcpClose:
	case protocol == unix.IPPROTO_MPTCP:
		// Both ends made it with MPTCP: a TCP client's connection to an
		// MPTCP listener (a Go program's, since Go 1.24) is a TCP socket.
		return 0, fmt.Errorf("%w: MPTCP connection %v -> %v in state %s: TCP repair mode does not reach MPTCP sockets (a connection is one only if both ends asked for MPTCP)",
			ErrUnsupported, local, remote, tcpStateName(state))
	case protocol == unix.IPPROTO_TCP && isConnection(state):
		// Shut down for writing, a connection has sent its FIN;
		// for reading, it has had its peer's. Shut down otherwise,
		// what the peer sends is dropped, which a restore cannot do.
		if want := shutdownOf(state); diag.Shutdown != want {
			return 0, fmt.Errorf("%w: TCP connection %v -> %v in state %s shut down (%v)", ErrUnsupported, local, remote, tcpStateName(state), e.GetShutdown())
		}
		if err := t.addConnection(fd, e, local, remote); err != nil {
			return 0, err
		}
		keep = true
	case protocol == unix.IPPROTO_TCP:
		return 0, fmt.Errorf("%w: TCP socket %v -> %v in state %s", ErrUnsupported, local, remote, tcpStateName(state))
	case isPing(typ, protocol) && (state == tcpClose || state == tcpEstablished):
		// Echo replies are the kernel's to deliver, by the socket's id:
		// one not read yet cannot be put back.
		if diag.Rqueue != 0 {
			return 0, fmt.Errorf("%w: ping socket %v holds a reply not read yet", ErrUnsupported, local)
		}
	case typ == unix.SOCK_DGRAM && protocol == unix.IPPROTO_UDP && (state == tcpClose || state == tcpEstablished):
		if err := t.dumpMemberships(fd, id, e.GetFamily(), local); err != nil {
			return 0, err
		}
		if err := t.dumpDatagrams(fd, id, diag, opts.GetSoBoundDev()); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("%w: socket of protocol %d in state %s", ErrUnsupported, protocol, tcpStateName(state))
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_INETSK, Id: id, Entry: e}), nil
}

// protoName names a stream socket's protocol in messages.
func protoName(protocol int) string {
	if protocol == unix.IPPROTO_MPTCP {
		return "MPTCP"
	}
	return "TCP"
}

// addrWords is an address as inet_sk_entry holds it: its bytes in
// network order, read as native 32-bit words (one for IPv4, four for
// IPv6).
func addrWords(a netip.Addr) []uint32 { return nativeWords(a.AsSlice()) }

// nativeWords reads b as native 32-bit words, as the images hold bytes
// of the kernel's (an address, an ICMP type filter).
func nativeWords(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// wordsBytes is the bytes of native 32-bit words w (nativeWords).
func wordsBytes(w []uint32) []byte {
	b := make([]byte, 0, 4*len(w))
	for _, x := range w {
		b = binary.NativeEndian.AppendUint32(b, x)
	}
	return b
}

// wordsAddr is the address of an entry's words and port, for the
// entry's family.
func wordsAddr(family uint32, w []uint32, port uint32) (netip.AddrPort, error) {
	b := wordsBytes(w)
	switch {
	case port > 0xffff:
		return netip.AddrPort{}, fmt.Errorf("port %d", port)
	case family == unix.AF_INET && len(b) == 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(port)), nil
	case family == unix.AF_INET6 && len(b) == 16:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b)), uint16(port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("address of %d words for family %d", len(w), family)
}

// sockaddr is a for a socket of family.
func sockaddr(family uint32, a netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

// inetOpt is an IP or TCP option an entry has a field for.
type inetOpt struct {
	level, opt int
	name       string
	get        func(e *pb.InetSkEntry) *uint32
	set        func(e *pb.InetSkEntry, v uint32)
}

func boolOpt(level, opt int, name string, field func(e *pb.InetSkEntry) **bool) inetOpt {
	return inetOpt{level, opt, name,
		func(e *pb.InetSkEntry) *uint32 {
			if p := *field(e); p != nil {
				v := uint32(0)
				if *p {
					v = 1
				}
				return &v
			}
			return nil
		},
		func(e *pb.InetSkEntry, v uint32) { *field(e) = pb.Bool(v != 0) }}
}

func intOpt(level, opt int, name string, field func(e *pb.InetSkEntry) **uint32) inetOpt {
	return inetOpt{level, opt, name,
		func(e *pb.InetSkEntry) *uint32 { return *field(e) },
		func(e *pb.InetSkEntry, v uint32) { *field(e) = pb.Uint32(v) }}
}

func ipOpts(e *pb.InetSkEntry) *pb.IpOptsEntry {
	if e.IpOpts == nil {
		e.IpOpts = &pb.IpOptsEntry{}
	}
	return e.IpOpts
}

func rawOpts(e *pb.InetSkEntry) *pb.IpOptsRawEntry {
	if ipOpts(e).Raw == nil {
		e.IpOpts.Raw = &pb.IpOptsRawEntry{}
	}
	return e.IpOpts.Raw
}

func tcpOpts(e *pb.InetSkEntry) *pb.TcpOptsEntry {
	if e.TcpOpts == nil {
		e.TcpOpts = &pb.TcpOptsEntry{}
	}
	return e.TcpOpts
}

// The options of inet sockets the images hold, by family and protocol,
// as CRIU keeps them.
var (
	ip4Opts = []inetOpt{
		boolOpt(unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND", func(e *pb.InetSkEntry) **bool { return &ipOpts(e).Freebind }),
		boolOpt(unix.SOL_IP, unix.IP_PKTINFO, "IP_PKTINFO", func(e *pb.InetSkEntry) **bool { return &ipOpts(e).Pktinfo }),
		intOpt(unix.SOL_IP, unix.IP_TOS, "IP_TOS", func(e *pb.InetSkEntry) **uint32 { return &ipOpts(e).Tos }),
		intOpt(unix.SOL_IP, unix.IP_TTL, "IP_TTL", func(e *pb.InetSkEntry) **uint32 { return &ipOpts(e).Ttl }),
	}
	ip6Opts = []inetOpt{
		boolOpt(unix.SOL_IPV6, unix.IPV6_V6ONLY, "IPV6_V6ONLY", func(e *pb.InetSkEntry) **bool { return &e.V6Only }),
		boolOpt(unix.SOL_IPV6, unix.IPV6_FREEBIND, "IPV6_FREEBIND", func(e *pb.InetSkEntry) **bool { return &ipOpts(e).Freebind }),
		boolOpt(unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", func(e *pb.InetSkEntry) **bool { return &ipOpts(e).Pktinfo }),
	}
	raw4Opts = []inetOpt{
		boolOpt(unix.SOL_IP, unix.IP_HDRINCL, "IP_HDRINCL", func(e *pb.InetSkEntry) **bool { return &rawOpts(e).Hdrincl }),
		boolOpt(unix.SOL_IP, unix.IP_NODEFRAG, "IP_NODEFRAG", func(e *pb.InetSkEntry) **bool { return &rawOpts(e).Nodefrag }),
	}
	raw6Opts = []inetOpt{
		boolOpt(unix.SOL_IPV6, unix.IPV6_HDRINCL, "IPV6_HDRINCL", func(e *pb.InetSkEntry) **bool { return &rawOpts(e).Hdrincl }),
	}
	tcpOptList = []inetOpt{
		boolOpt(unix.SOL_TCP, unix.TCP_NODELAY, "TCP_NODELAY", func(e *pb.InetSkEntry) **bool { return &tcpOpts(e).Nodelay }),
		boolOpt(unix.SOL_TCP, unix.TCP_CORK, "TCP_CORK", func(e *pb.InetSkEntry) **bool { return &tcpOpts(e).Cork }),
		intOpt(unix.SOL_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT", func(e *pb.InetSkEntry) **uint32 { return &tcpOpts(e).Keepcnt }),
		intOpt(unix.SOL_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", func(e *pb.InetSkEntry) **uint32 { return &tcpOpts(e).Keepidle }),
		intOpt(unix.SOL_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", func(e *pb.InetSkEntry) **uint32 { return &tcpOpts(e).Keepintvl }),
	}
)

// inetLostOpts are IP and TCP options the images have no field for, with
// the value of a new socket: a socket with another is refused. IP_TRANSPARENT
// also needs CAP_NET_ADMIN, which a restore must not give.
var inetLostOpts = []struct {
	family, level, opt int
	name               string
	value              int
	// udp is for the options of UDP sockets only.
	udp bool
}{
	{unix.AF_INET, unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT", 0, false},
	// An accepted TCP socket's multicast TTL is its SYN's TTL.
	{family: unix.AF_INET, level: unix.SOL_IP, opt: unix.IP_MULTICAST_TTL, name: "IP_MULTICAST_TTL", value: 1, udp: true},
	{family: unix.AF_INET, level: unix.SOL_IP, opt: unix.IP_MULTICAST_LOOP, name: "IP_MULTICAST_LOOP", value: 1, udp: true},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT", 0, false},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TCLASS, "IPV6_TCLASS", 0, false},
	{unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", 64, false},
	{family: unix.AF_INET6, level: unix.SOL_IPV6, opt: unix.IPV6_MULTICAST_LOOP, name: "IPV6_MULTICAST_LOOP", value: 1, udp: true},
}

// inetOptsOf lists the options entry e has, by its family, type and
// protocol.
func inetOptsOf(e *pb.InetSkEntry) []inetOpt {
	l, raw := ip6Opts, raw6Opts
	if e.GetFamily() == unix.AF_INET {
		l, raw = ip4Opts, raw4Opts
	}
	switch {
	case e.GetType() == unix.SOCK_RAW:
		l = append(l[:len(l):len(l)], raw...)
	case e.GetType() == unix.SOCK_STREAM:
		l = append(l[:len(l):len(l)], tcpOptList...)
	}
	return l
}

// dumpInetOpts reads the IP and TCP options of socket fd into e.
func dumpInetOpts(fd int, e *pb.InetSkEntry) error {
	for _, o := range inetOptsOf(e) {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if notForThisSocket(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", o.name, err)
		}
		o.set(e, uint32(v))
	}
	for _, l := range inetLostOpts {
		if l.family == unix.AF_INET && e.GetFamily() != unix.AF_INET || l.family == unix.AF_INET6 && e.GetFamily() != unix.AF_INET6 ||
			l.level == unix.SOL_TCP && e.GetProto() != unix.IPPROTO_TCP && e.GetProto() != unix.IPPROTO_MPTCP || l.udp && e.GetProto() != unix.IPPROTO_UDP {
			continue
		}
		v, err := unix.GetsockoptInt(fd, l.level, l.opt)
		if notForThisSocket(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", l.name, err)
		}
		if v != l.value {
			return fmt.Errorf("%w: socket option %s is %d (a checkpoint cannot hold it)", ErrUnsupported, l.name, v)
		}
	}
	if e.GetType() == unix.SOCK_RAW {
		return dumpRawOpts(fd, e)
	}
	return nil
}

// dumpRawOpts reads into e the ICMP type filter of raw socket fd, and
// refuses an IPv6 one that computes a checksum at an offset of its own
// (IPV6_CHECKSUM), which the images cannot hold: a new socket's is the
// kernel's for ICMPv6 (at 2) and mobility headers (IPPROTO_MH, at 4), and
// off (-1) for other protocols.
func dumpRawOpts(fd int, e *pb.InetSkEntry) error {
	family, protocol := int(e.GetFamily()), int(e.GetProto())
	if level, opt, words, ok := kernel.ICMPFilterOf(family, protocol); ok {
		buf := make([]byte, 4*words)
		n, err := kernel.GetsockoptBytes(fd, level, opt, buf)
		if err != nil {
			return fmt.Errorf("read the ICMP type filter: %w", err)
		}
		if n != len(buf) {
			return fmt.Errorf("read the ICMP type filter: %d bytes, want %d", n, len(buf))
		}
		rawOpts(e).IcmpvFilter = nativeWords(buf)
	}
	if family != unix.AF_INET6 {
		return nil
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_RAW, unix.IPV6_CHECKSUM)
	if err != nil {
		return fmt.Errorf("read IPV6_CHECKSUM: %w", err)
	}
	want := -1
	switch protocol {
	case unix.IPPROTO_ICMPV6:
		want = 2
	case unix.IPPROTO_MH:
		want = 4
	}
	if v != want {
		return fmt.Errorf("%w: socket option IPV6_CHECKSUM is %d (a checkpoint cannot hold it)", ErrUnsupported, v)
	}
	return nil
}

// restoreRawOpts sets on raw socket fd the ICMP type filter of e.
func restoreRawOpts(fd int, e *pb.InetSkEntry) error {
	f := e.GetIpOpts().GetRaw().GetIcmpvFilter()
	if len(f) == 0 {
		return nil
	}
	level, opt, _, _ := kernel.ICMPFilterOf(int(e.GetFamily()), int(e.GetProto()))
	if err := unix.SetsockoptString(fd, level, opt, string(wordsBytes(f))); err != nil {
		return fmt.Errorf("set the ICMP type filter: %w", err)
	}
	return nil
}

// restoreInetOpts sets on socket fd the IP and TCP options of e that a
// new socket does not have already.
func restoreInetOpts(fd int, e *pb.InetSkEntry) error {
	for _, o := range inetOptsOf(e) {
		want := o.get(e)
		if want == nil {
			continue
		}
		if cur, err := unix.GetsockoptInt(fd, o.level, o.opt); err == nil && uint32(cur) == *want {
			continue
		}
		if err := unix.SetsockoptInt(fd, o.level, o.opt, int(*want)); err != nil {
			return fmt.Errorf("set %s to %d: %w", o.name, *want, err)
		}
	}
	if e.GetType() == unix.SOCK_RAW {
		return restoreRawOpts(fd, e)
	}
	return nil
}

func (inetKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetIsk()
	if e == nil {
		return imageErr("file %d: INETSK without an isk entry", f.GetId())
	}
	if e.Opts == nil {
		return imageErr("file %d: inet socket without options", f.GetId())
	}
	if _, err := wordsAddr(e.GetFamily(), e.SrcAddr, e.GetSrcPort()); err != nil {
		return imageErr("file %d: inet socket source: %v", f.GetId(), err)
	}
	if _, err := wordsAddr(e.GetFamily(), e.DstAddr, e.GetDstPort()); err != nil {
		return imageErr("file %d: inet socket destination: %v", f.GetId(), err)
	}
	switch p, st := e.GetProto(), e.GetState(); {
	case e.GetType() == unix.SOCK_STREAM && (p == unix.IPPROTO_TCP || p == unix.IPPROTO_MPTCP) && (st == tcpListen || st == tcpClose):
	case e.GetType() == unix.SOCK_STREAM && p == unix.IPPROTO_TCP && isConnection(st):
		return s.checkConnection(f)
	case e.GetType() == unix.SOCK_DGRAM && (p == unix.IPPROTO_UDP || isPing(unix.SOCK_DGRAM, int(p))) && (st == tcpClose || st == tcpEstablished):
	case e.GetType() == unix.SOCK_RAW && (st == tcpClose || st == tcpEstablished):
		filter := e.GetIpOpts().GetRaw().GetIcmpvFilter()
		if _, _, words, ok := kernel.ICMPFilterOf(int(e.GetFamily()), int(p)); len(filter) != 0 && (!ok || len(filter) != words) {
			return imageErr("file %d: ICMP type filter of %d words on a raw socket of family %d, protocol %d", f.GetId(), len(filter), e.GetFamily(), p)
		}
	default:
		return fmt.Errorf("%w: file %d: inet socket of type %d, protocol %d, state %s", ErrUnsupported, f.GetId(), e.GetType(), p, tcpStateName(st))
	}
	return nil
}

// open makes the socket as the process (socketAsProcess), sets it up
// from cryo (options, then bound, listening or connected as it was, its
// datagrams queued), then gives it to the process.
func (inetKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetIsk()
	typ := int(e.GetType())
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := r.socketAsProcess(int(e.GetFamily()), typ, int(e.GetProto()))
	if err != nil {
		return -1, err
	}
	if e.GetProto() == unix.IPPROTO_TCP && isConnection(e.GetState()) {
		err = r.restoreConnection(fd, f)
	} else {
		share := r.sharesPort(e)
		if err = setupInet(fd, e, share); err == nil && share {
			err = r.reusePortLater(fd)
		}
		if err == nil {
			err = r.restoreDatagrams(fd, f)
		}
	}
	if err == nil {
		err = errors.Join(r.set.joinGroups(fd, f.GetId()), r.set.setPeekOff(fd, f.GetId()), r.set.setTCPOpts(fd, f.GetId()), r.set.setKeptOpts(fd, f.GetId()))
	}
	if err == nil && e.GetFlags()&unix.O_ASYNC != 0 {
		// Signal-driven I/O; its owner comes after (restoreOwner).
		err = setStatusFlags(fd, e.GetFlags())
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// inetRestorer holds the sockets bound with SO_REUSEPORT that the
// process had turned off since (sharesPort): cryo's duplicates, turned
// off once every entry is open.
type inetRestorer struct {
	reusePortOff []int
}

// sharesPort reports whether entry e, without SO_REUSEPORT, is bound to
// the address and port of another socket of the process that has it:
// they were bound together while both had it, and one turned it off since
// (zdtm socket-tcp-reuseport). It gets it for the time of the restore
// (setupInet), or the second could not bind.
func (r *Restorer) sharesPort(e *pb.InetSkEntry) bool {
	if e.GetOpts().GetSoReuseport() || e.GetSrcPort() == 0 {
		return false
	}
	for _, fde := range r.set.Fds {
		o := r.set.File(fde.GetId()).GetIsk()
		if o != nil && o != e && o.GetOpts().GetSoReuseport() && !isConnection(o.GetState()) && o.GetFamily() == e.GetFamily() &&
			o.GetProto() == e.GetProto() && o.GetSrcPort() == e.GetSrcPort() && slices.Equal(o.SrcAddr, e.SrcAddr) {
			return true
		}
	}
	return false
}

// reusePortLater keeps a duplicate of socket fd, which has SO_REUSEPORT
// for the time of the restore only (sharesPort), to turn it off once
// every entry is open.
func (r *Restorer) reusePortLater(fd int) error {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicate socket: %w", err)
	}
	r.reusePortOff = append(r.reusePortOff, dup)
	return nil
}

// opened turns SO_REUSEPORT off again where setupInet set it for the
// restore.
func (inetKind) opened(r *Restorer) error {
	var err error
	for _, fd := range r.reusePortOff {
		if serr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 0); serr != nil && err == nil {
			err = fmt.Errorf("turn SO_REUSEPORT off again: %w", serr)
		}
		unix.Close(fd)
	}
	r.reusePortOff = nil
	return err
}

// socketAsProcess makes a socket in cryo, close-on-exec, with the
// credentials of the process: it is the process's (its owner, which
// sock_diag shows and netfilter matches). Binding it, even to a
// privileged port, is done as cryo: the process had it bound.
//
// A raw or packet socket takes CAP_NET_RAW, which the process had when it
// made it (as root, or by a file capability as ping may have) and may have
// dropped since: it is made with the process's filesystem ids, which make
// its owner, and CAP_NET_RAW alone.
func (r *Restorer) socketAsProcess(family, typ, protocol int) (int, error) {
	fd := -1
	socket := func() (err error) {
		fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, protocol)
		return err
	}
	var err error
	switch c := r.creds; {
	case (typ&0xf == unix.SOCK_RAW || family == unix.AF_PACKET) && c != nil:
		err = onThreadAs(nil, func() error {
			fs := kernel.FsCreds{Fsuid: c.EUID, Fsgid: c.EGID, Groups: c.Groups, Effective: 1 << unix.CAP_NET_RAW}
			if err := kernel.SetThreadFsCreds(fs); err != nil {
				return err
			}
			return socket()
		})
	default:
		err = r.asProcess(socket)
	}
	if err != nil {
		return -1, fmt.Errorf("make socket: %w", err)
	}
	return fd, nil
}

// bindInet binds socket fd of family to src. An address not local was
// bound with IP_FREEBIND, which the process may have turned off since
// (zdtm sk-freebind-false): it is set for the bind, and off again.
func bindInet(fd int, family uint32, src netip.AddrPort) error {
	err := unix.Bind(fd, sockaddr(family, src))
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		level, opt := unix.SOL_IP, unix.IP_FREEBIND
		if family == unix.AF_INET6 {
			level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
		}
		if ferr := unix.SetsockoptInt(fd, level, opt, 1); ferr != nil {
			return fmt.Errorf("bind to %v: %w (and set IP_FREEBIND: %w)", src, err, ferr)
		}
		err = unix.Bind(fd, sockaddr(family, src))
		if ferr := unix.SetsockoptInt(fd, level, opt, 0); err == nil && ferr != nil {
			return fmt.Errorf("turn IP_FREEBIND off again: %w", ferr)
		}
	}
	if err != nil {
		return fmt.Errorf("bind to %v: %w", src, err)
	}
	return nil
}

// setupInet sets socket fd up as entry e says, but for a connected TCP
// socket's connection; with sharePort, SO_REUSEPORT on too (sharesPort).
func setupInet(fd int, e *pb.InetSkEntry, sharePort bool) error {
	if err := RestoreSockOpts(fd, e.Opts); err != nil {
		return err
	}
	if err := restoreInetOpts(fd, e); err != nil {
		return err
	}
	if sharePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT for the restore: %w", err)
		}
	}
	src, _ := wordsAddr(e.GetFamily(), e.SrcAddr, e.GetSrcPort())
	dst, _ := wordsAddr(e.GetFamily(), e.DstAddr, e.GetDstPort())
	if src.Port() != 0 || e.GetState() == tcpListen {
		if err := bindInet(fd, e.GetFamily(), src); err != nil {
			return err
		}
	}
	switch {
	case e.GetState() == tcpListen:
		if err := unix.Listen(fd, int(e.GetBacklog())); err != nil {
			return fmt.Errorf("listen on %v: %w", src, err)
		}
	case e.GetState() == tcpEstablished && e.GetType() != unix.SOCK_STREAM:
		if err := unix.Connect(fd, sockaddr(e.GetFamily(), dst)); err != nil {
			return fmt.Errorf("connect %v to %v: %w", src, dst, err)
		}
	}
	if e.Shutdown != nil && e.GetShutdown() != pb.SkShutdown_NONE {
		// shutdown(2) takes SHUT_RD (0), SHUT_WR (1) or both (2); the
		// entry holds sk_shutdown's bits. On a socket not connected it
		// sets them and says ENOTCONN.
		how := int(e.GetShutdown()) - 1
		if err := unix.Shutdown(fd, how); err != nil && !(errors.Is(err, unix.ENOTCONN) && e.GetState() != tcpEstablished) {
			return fmt.Errorf("shut down %v: %w", src, err)
		}
	}
	return nil
}
