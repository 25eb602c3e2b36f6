package files

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// packetKind is an AF_PACKET socket (CRIU's packet_sock_entry), of type
// SOCK_RAW or SOCK_DGRAM, as DHCP clients, lldpd, keepalived and arping
// hold them. The dump reads what sock_diag says of it (packet_diag: its
// protocol, interface, settings, memberships, rings and fanout group) and
// the options the socket answers on cryo's duplicate; the restore makes
// it anew as the process (with CAP_NET_RAW alone, as raw sockets are),
// sets it up from cryo and gives it to the process.
//
// Refused: a ring (PACKET_RX_RING, PACKET_TX_RING: its frames are the
// process's memory and the kernel's position in them, which cryo does not
// rebuild), a frame queued and not read yet (a restore cannot give a
// received frame back: sent again, it would reach every socket that
// takes it, and the network), an error queued, a fanout group steered by
// a BPF program (which the kernel does not give back), SOCK_PACKET
// sockets, and a socket bound to an interface that is gone.
type packetKind struct{}

// packetTable is what sock_diag says of the packet sockets of cryo's
// network namespace, by inode, asked for the first one dumped.
type packetTable struct {
	packetDiag map[uint32]kernel.PacketDiag
}

// maxAddrLen is MAX_ADDR_LEN (include/linux/netdevice.h), the most bytes
// a membership's address holds.
const maxAddrLen = 32

// tpacketV3 is TPACKET_V3 (include/uapi/linux/if_packet.h), the last
// PACKET_VERSION.
const tpacketV3 = 2

// vnetHdrLen is the size of struct virtio_net_hdr
// (include/uapi/linux/virtio_net.h), which PACKET_VNET_HDR turns on; a
// larger one (PACKET_VNET_HDR_SZ) the images cannot hold.
const vnetHdrLen = 10

// fanoutType is the type of a PACKET_FANOUT value (the group's id is in
// bits 0-15, its type in 16-23, its flags in 24-31).
func fanoutType(v uint32) uint32 { return v >> 16 & 0xff }

func (packetKind) typ() pb.FdTypes { return pb.FdTypes_PACKETSK }

func (packetKind) claims(d *desc) bool {
	return d.mode() == unix.S_IFSOCK && sockProtoName(d) == "PACKET"
}

// packetName names a packet socket in messages: its inode, type,
// ethertype and interface.
func packetName(ino uint32, typ uint8, protocol uint16, ifindex uint32) string {
	t := fmt.Sprintf("type %d", typ)
	switch typ {
	case unix.SOCK_RAW:
		t = "SOCK_RAW"
	case unix.SOCK_DGRAM:
		t = "SOCK_DGRAM"
	}
	on := "every interface"
	if ifindex != 0 {
		on = fmt.Sprintf("interface %d", ifindex)
		if n, err := kernel.InterfaceName(ifindex); err == nil {
			on = n
		}
	}
	return fmt.Sprintf("packet socket %d (%s, ethertype %#04x, on %s)", ino, t, ntohs(protocol), on)
}

// ntohs swaps a 16-bit value between network and host byte order.
func ntohs(v uint16) uint16 { return v>>8 | v<<8 }

func (packetKind) dump(t *Table, d *desc) (uint32, error) {
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ino := uint32(d.st.Ino)
	if t.packetDiag == nil {
		if t.packetDiag, err = kernel.PacketDiagDump(); err != nil {
			return 0, err
		}
	}
	diag, ok := t.packetDiag[ino]
	if !ok {
		if same, err := kernel.InCryoNetns(fd); err != nil || !same {
			return 0, fmt.Errorf("%w: packet socket %d is not in cryo's network namespace (sock_diag does not know it): %v", ErrUnsupported, ino, err)
		}
		return 0, fmt.Errorf("%w: packet socket %d: sock_diag does not list it", ErrUnsupported, ino)
	}
	name := packetName(ino, diag.Type, diag.Protocol, diag.Info.Index)
	if err := refusePacket(fd, diag, name); err != nil {
		return 0, err
	}
	opts, err := DumpSockOpts(fd, true)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	id := t.nextID()
	e := &pb.PacketSockEntry{
		Id: id, Type: uint32(diag.Type), Protocol: uint32(diag.Protocol), Flags: statusFlags(d.info),
		Ifindex: diag.Info.Index, Fown: &pb.FownEntry{}, Opts: opts,
		Version: diag.Info.Version, Reserve: diag.Info.Reserve,
		AuxData: diag.Info.Flags&kernel.PDIAuxdata != 0, OrigDev: diag.Info.Flags&kernel.PDIOrigdev != 0,
		VnetHdr: diag.Info.Flags&kernel.PDIVnethdr != 0, Loss: diag.Info.Flags&kernel.PDILoss != 0,
		Timestamp: diag.Info.Tstamp, CopyThresh: diag.Info.CopyThresh,
	}
	ifaces := []uint32{diag.Info.Index}
	for _, m := range diag.Mclist {
		// A membership added n times is n entries, added again one by
		// one: the kernel counts them, and drops it at the nth drop.
		for range m.Count {
			e.Mclist = append(e.Mclist, &pb.PacketMclist{Index: m.Index, Type: uint32(m.Type), Addr: slices.Clone(m.Addr[:m.Alen])})
		}
		ifaces = append(ifaces, m.Index)
	}
	if diag.Fanout != nil {
		// sock_diag does not say the group's flags, which getsockopt
		// does, in the layout setsockopt takes.
		v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
		if err != nil {
			return 0, fmt.Errorf("%s: read PACKET_FANOUT: %w", name, err)
		}
		e.Fanout = pb.Uint32(uint32(v))
	}
	if err := t.dumpKeptOpts(fd, id, unix.AF_PACKET); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	x := t.extra(id)
	for _, i := range ifaces {
		if i == 0 || slices.ContainsFunc(x.Ifaces, func(f image.Iface) bool { return f.Index == i }) {
			continue
		}
		n, err := kernel.InterfaceName(i)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		x.Ifaces = append(x.Ifaces, image.Iface{Index: i, Name: n})
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_PACKETSK, Id: id, Entry: e}), nil
}

// refusePacket refuses packet socket fd, named name, if it holds what a
// checkpoint cannot keep.
func refusePacket(fd int, diag kernel.PacketDiag, name string) error {
	switch {
	case diag.Type != unix.SOCK_RAW && diag.Type != unix.SOCK_DGRAM:
		return fmt.Errorf("%w: %s: only SOCK_RAW and SOCK_DGRAM packet sockets are kept", ErrUnsupported, name)
	case diag.Info.Index == ^uint32(0):
		return fmt.Errorf("%w: %s is bound to an interface that is gone", ErrUnsupported, name)
	case diag.RxRing != nil:
		return fmt.Errorf("%w: %s has a receive ring (PACKET_RX_RING): its frames, mapped by the process, and the kernel's place in them are not kept", ErrUnsupported, name)
	case diag.TxRing != nil:
		return fmt.Errorf("%w: %s has a transmit ring (PACKET_TX_RING): its frames, mapped by the process, and the kernel's place in them are not kept", ErrUnsupported, name)
	case diag.Fanout != nil && (fanoutType(*diag.Fanout) == unix.PACKET_FANOUT_CBPF || fanoutType(*diag.Fanout) == unix.PACKET_FANOUT_EBPF):
		return fmt.Errorf("%w: %s is in fanout group %d steered by a BPF program, which the kernel does not give back", ErrUnsupported, name, *diag.Fanout&0xffff)
	}
	for _, m := range diag.Mclist {
		if m.Type > unix.PACKET_MR_UNICAST {
			return fmt.Errorf("%w: %s has a membership of unknown type %d on interface %d", ErrUnsupported, name, m.Type, m.Index)
		}
	}
	switch v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR_SZ); {
	case err != nil && !notForThisSocket(err):
		return fmt.Errorf("%s: read PACKET_VNET_HDR_SZ: %w", name, err)
	case err == nil && v != 0 && v != vnetHdrLen:
		return fmt.Errorf("%w: %s has a virtio header of %d bytes (PACKET_VNET_HDR_SZ): a checkpoint holds only PACKET_VNET_HDR's %d", ErrUnsupported, name, v, vnetHdrLen)
	}
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(p, 0); err != nil {
		return fmt.Errorf("poll %s: %w", name, err)
	}
	switch {
	case p[0].Revents&unix.POLLERR != 0:
		return fmt.Errorf("%w: %s has an error queued (a transmit timestamp, or its interface went down), which cannot be read without taking it", ErrUnsupported, name)
	case p[0].Revents&unix.POLLIN != 0:
		n, _ := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return fmt.Errorf("%w: %s holds a frame of %d bytes not read yet: a restore cannot give a received frame back (sent again, it would reach every socket that takes it, and the network)", ErrUnsupported, name, n)
	}
	return nil
}

func (packetKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetPsk()
	switch {
	case e == nil:
		return imageErr("file %d: PACKETSK without a packet entry", f.GetId())
	case e.Opts == nil || e.Fown == nil:
		return imageErr("file %d: packet socket without options or owner", f.GetId())
	case e.GetType() != unix.SOCK_RAW && e.GetType() != unix.SOCK_DGRAM:
		return fmt.Errorf("%w: file %d: packet socket of type %d", ErrUnsupported, f.GetId(), e.GetType())
	case e.GetProtocol() > 0xffff:
		return imageErr("file %d: packet socket of protocol %#x", f.GetId(), e.GetProtocol())
	case e.GetIfindex() > 1<<31-1:
		return imageErr("file %d: packet socket bound to interface %d", f.GetId(), e.GetIfindex())
	case e.GetVersion() > tpacketV3:
		return imageErr("file %d: packet socket of unknown PACKET_VERSION %d", f.GetId(), e.GetVersion())
	case e.RxRing != nil || e.TxRing != nil:
		return fmt.Errorf("%w: file %d: packet socket with a ring", ErrUnsupported, f.GetId())
	case e.Fanout != nil && fanoutType(e.GetFanout()) > unix.PACKET_FANOUT_EBPF:
		return imageErr("file %d: packet socket in a fanout group of unknown type %d", f.GetId(), fanoutType(e.GetFanout()))
	case e.Fanout != nil && fanoutType(e.GetFanout()) >= unix.PACKET_FANOUT_CBPF:
		return fmt.Errorf("%w: file %d: packet socket in a fanout group steered by a BPF program", ErrUnsupported, f.GetId())
	}
	ifaces := []uint32{e.GetIfindex()}
	for _, m := range e.Mclist {
		if m.GetType() > unix.PACKET_MR_UNICAST || len(m.GetAddr()) > maxAddrLen || m.GetIndex() == 0 || m.GetIndex() > 1<<31-1 {
			return imageErr("file %d: packet socket membership of type %d on interface %d, address of %d bytes", f.GetId(), m.GetType(), m.GetIndex(), len(m.GetAddr()))
		}
		ifaces = append(ifaces, m.GetIndex())
	}
	x := s.sockExtras[f.GetId()]
	for _, i := range x.Ifaces {
		if !slices.Contains(ifaces, i.Index) {
			return imageErr("%s: file %d names interface %d, which its entry does not", image.SockExtras.FileName(0), f.GetId(), i.Index)
		}
	}
	// The restore may run on another machine: the interfaces must be
	// there, under the names they had (a checkpoint of CRIU's has none).
	for _, i := range ifaces {
		if i == 0 {
			continue
		}
		here, err := kernel.InterfaceName(i)
		at := slices.IndexFunc(x.Ifaces, func(f image.Iface) bool { return f.Index == i })
		switch {
		case err != nil && at >= 0:
			return fmt.Errorf("%w: packet socket file %d uses interface %d (%s at the dump), which this machine does not have: %v", ErrInterface, f.GetId(), i, x.Ifaces[at].Name, err)
		case err != nil:
			return fmt.Errorf("%w: packet socket file %d uses interface %d, which this machine does not have: %v", ErrInterface, f.GetId(), i, err)
		case at >= 0 && here != x.Ifaces[at].Name:
			return fmt.Errorf("%w: packet socket file %d uses interface %d, %s at the dump, which is %s here", ErrInterface, f.GetId(), i, x.Ifaces[at].Name, here)
		}
	}
	return nil
}

// open makes the packet socket as the process, sets its options, binds
// it to its interface and protocol, adds its memberships, joins its fanout
// group, and gives it to the process.
func (packetKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetPsk()
	typ := int(e.GetType())
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		typ |= unix.SOCK_NONBLOCK
	}
	// Made with protocol 0 it takes no frame until bound, as it was, to
	// its own (a socket does not say which it was made with: SO_PROTOCOL
	// reads 0), after its filter is attached.
	fd, err := r.socketAsProcess(unix.AF_PACKET, typ, 0)
	if err != nil {
		return -1, err
	}
	if err := setupPacket(fd, e); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket file %d (ethertype %#04x, interface %d): %w", f.GetId(), ntohs(uint16(e.GetProtocol())), e.GetIfindex(), err)
	}
	if err := r.set.setKeptOpts(fd, f.GetId()); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setupPacket sets packet socket fd, made with protocol 0, up as entry e
// says.
func setupPacket(fd int, e *pb.PacketSockEntry) error {
	if err := RestoreSockOpts(fd, e.Opts); err != nil {
		return err
	}
	for _, o := range []struct {
		opt  int
		name string
		v    uint32
	}{
		{unix.PACKET_VERSION, "PACKET_VERSION", e.GetVersion()},
		{unix.PACKET_RESERVE, "PACKET_RESERVE", e.GetReserve()},
		{unix.PACKET_TIMESTAMP, "PACKET_TIMESTAMP", e.GetTimestamp()},
		{unix.PACKET_COPY_THRESH, "PACKET_COPY_THRESH", e.GetCopyThresh()},
		{unix.PACKET_AUXDATA, "PACKET_AUXDATA", b2u(e.GetAuxData())},
		{unix.PACKET_ORIGDEV, "PACKET_ORIGDEV", b2u(e.GetOrigDev())},
		{unix.PACKET_VNET_HDR, "PACKET_VNET_HDR", b2u(e.GetVnetHdr())},
		{unix.PACKET_LOSS, "PACKET_LOSS", b2u(e.GetLoss())},
	} {
		if o.v == 0 {
			continue // a new socket's
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, int(o.v)); err != nil {
			return fmt.Errorf("set %s to %d: %w", o.name, o.v, err)
		}
	}
	if e.GetIfindex() != 0 || e.GetProtocol() != 0 {
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(e.GetProtocol()), Ifindex: int(e.GetIfindex())}); err != nil {
			return fmt.Errorf("bind to interface %d, ethertype %#04x: %w", e.GetIfindex(), ntohs(uint16(e.GetProtocol())), err)
		}
	}
	// The kernel puts each new membership first in its list, which the
	// entry holds in that list's order.
	for _, m := range slices.Backward(e.Mclist) {
		mreq := kernel.PacketMreqMax{Ifindex: int32(m.GetIndex()), Type: uint16(m.GetType()), Alen: uint16(len(m.GetAddr()))}
		copy(mreq.Address[:], m.GetAddr())
		if err := kernel.SetsockoptPacketMreqMax(fd, mreq); err != nil {
			return fmt.Errorf("add membership of type %d on interface %d: %w", m.GetType(), m.GetIndex(), err)
		}
	}
	if e.Fanout != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(e.GetFanout())); err != nil {
			return fmt.Errorf("join fanout group %d of type %d: %w", e.GetFanout()&0xffff, fanoutType(e.GetFanout()), err)
		}
	}
	return nil
}

// b2u is 1 for true.
func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
