package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// The datagrams queued to a UDP socket are read without being consumed,
// at a peek offset moved along by each MSG_PEEK as for unix sockets, and
// go into sk-queues.img with them, one sk_packet_entry per datagram with
// its sender in the field CRIU reserves for it (addr): the address's 4 or
// 16 bytes, then the port in network order. CRIU itself keeps no UDP
// queue. The restore puts each back into the new socket's queue as the
// sender would, from its address: a UDP datagram crafted on a raw socket
// (cryo has CAP_NET_RAW) to the socket's address (loopback for a socket
// bound to all addresses), delivered through the loopback device.

// maxDatagram is the largest UDP payload: 65535 less the UDP header.
const maxDatagram = 65535 - 8

// dumpDatagrams records the datagrams queued to UDP socket fd, entry id,
// bound to device dev if not "".
func (t *Table) dumpDatagrams(fd int, id uint32, diag kernel.InetDiag, dev string) error {
	off, err := t.dumpPeekOff(fd, id)
	if err != nil || diag.Rqueue == 0 {
		return err
	}
	if dev != "" {
		// They could only be put back through the loopback device.
		return fmt.Errorf("%w: UDP socket %v bound to device %s with datagrams queued", ErrUnsupported, diag.Local(), dev)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return fmt.Errorf("set peek offset: %w", err)
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	buf := make([]byte, maxDatagram+1)
	for {
		n, _, _, from, err := unix.Recvmsg(fd, buf, nil, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("peek queue: %w", err)
		}
		if n == 0 || n > maxDatagram {
			// The peek offset does not move past an empty datagram;
			// a larger one is a GRO aggregate (UDP_GRO).
			return fmt.Errorf("%w: UDP socket %v with a datagram of %d bytes queued", ErrUnsupported, diag.Local(), n)
		}
		var src netip.AddrPort
		switch sa := from.(type) {
		case *unix.SockaddrInet4:
			src = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			src = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		default:
			return fmt.Errorf("UDP socket %v: datagram from %T", diag.Local(), from)
		}
		p := unixPacket{e: &pb.SkPacketEntry{IdFor: id, Length: uint32(n)}, data: slices.Clone(buf[:n])}
		setPacketExtras(p.e, binary.BigEndian.AppendUint16(src.Addr().AsSlice(), src.Port()), nil)
		t.unixTable.queues = append(t.unixTable.queues, p)
	}
}

// datagramSender is the sender address a packet records, as
// dumpDatagrams writes it.
func datagramSender(addr []byte) (netip.AddrPort, error) {
	a, ok := netip.AddrFromSlice(addr[:max(len(addr)-2, 0)])
	if !ok || len(addr) != 6 && len(addr) != 18 {
		return netip.AddrPort{}, imageErr("UDP datagram sender of %d bytes", len(addr))
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(addr[len(addr)-2:])), nil
}

// restoreDatagrams queues to socket fd the datagrams of entry f, in
// order, each from its sender.
func (r *Restorer) restoreDatagrams(fd int, f *pb.FileEntry) error {
	packets := r.set.queued[f.GetId()]
	if len(packets) == 0 {
		return nil
	}
	e := f.GetIsk()
	if e.GetType() != unix.SOCK_DGRAM || e.GetProto() != unix.IPPROTO_UDP {
		return imageErr("file %d: datagrams queued to a socket of type %d, protocol %d", f.GetId(), e.GetType(), e.GetProto())
	}
	dst, _ := wordsAddr(e.GetFamily(), e.SrcAddr, e.GetSrcPort())
	if dst.Addr().IsUnspecified() {
		dst = netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port())
		if e.GetFamily() == unix.AF_INET {
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())
		}
	}
	// The datagrams go through the loopback device's queue of the CPU
	// that sends them: one CPU keeps them in order.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("read CPU affinity: %w", err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return fmt.Errorf("stay on CPU %d: %w", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &set)
	raw := map[bool]int{}
	defer func() {
		for _, s := range raw {
			unix.Close(s)
		}
	}()
	for i, p := range packets {
		addr, _ := packetExtras(p.e)
		src, err := datagramSender(addr)
		if err != nil {
			return err
		}
		to := dst
		if src.Addr().Is4In6() || src.Addr().Is4() {
			// An IPv4 datagram, to an IPv6 socket too (IPv4-mapped).
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
			if !to.Addr().Is4() {
				to = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), to.Port())
			}
		}
		v4 := src.Addr().Is4()
		s, ok := raw[v4]
		if !ok {
			if s, err = rawSocket(v4); err != nil {
				return err
			}
			raw[v4] = s
		}
		if err := unix.Sendto(s, kernel.UDPPacket(src, to, p.data), 0, rawSockaddr(to.Addr())); err != nil {
			return fmt.Errorf("queue datagram %d from %v to %v: %w", i, src, to, err)
		}
	}
	return awaitDatagrams(fd, len(packets))
}

// rawSocket opens a raw socket of IPPROTO_RAW, IPv4 or IPv6, which sends
// packets with the headers given (kernel.UDPPacket, kernel.TCPFin).
func rawSocket(v4 bool) (int, error) {
	family := unix.AF_INET6
	if v4 {
		family = unix.AF_INET
	}
	s, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("open raw socket: %w", err)
	}
	return s, nil
}

// rawSockaddr is where a raw socket sends a packet to addr.
func rawSockaddr(addr netip.Addr) unix.Sockaddr {
	if addr.Is4() {
		return &unix.SockaddrInet4{Addr: addr.As4()}
	}
	return &unix.SockaddrInet6{Addr: addr.As16()}
}

// datagramWait bounds how long a restore waits for the datagrams it sent to
// reach their socket.
const datagramWait = 5 * time.Second

// awaitDatagrams waits until socket fd holds n datagrams: sent through the
// loopback device, they reach it from the CPU's backlog, which a loaded
// machine may work through after sendto has returned. They are counted by
// peeking past each in turn (SO_PEEK_OFF, put back to off after).
func awaitDatagrams(fd, n int) error {
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, -1)
	buf := make([]byte, 1<<16)
	for deadline := time.Now().Add(datagramWait); ; time.Sleep(time.Millisecond) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
			return fmt.Errorf("count queued datagrams: %w", err)
		}
		got := 0
		for ; got < n; got++ {
			if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT); err != nil {
				break
			}
		}
		if got == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d datagrams reached their socket in %v", got, n, datagramWait)
		}
	}
}
