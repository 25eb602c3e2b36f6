package files

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// netlinkKind is a netlink socket of a protocol whose whole state is in
// the socket (CRIU's netlink_sk_entry): its port id, the multicast groups
// it listens to, the peer it is connected to. A program keeps a
// NETLINK_ROUTE one to hear of links, addresses and routes, a
// NETLINK_KOBJECT_UEVENT one to hear of devices (udev's monitors), a
// NETLINK_AUDIT one to send audit records (dbus-daemon); it asks things of
// NETLINK_SOCK_DIAG. The restore makes it in the process and binds it
// again through cryo's duplicate. What it has queued (answers not read,
// notifications) is refused: replaying them would tell the program of a
// state that is gone; so are the audit daemon's socket, the kernel's
// registration of which dies with it, the other protocols, where the
// kernel keeps state per socket (a generic netlink family's, a netfilter
// queue's binding), and the netlink options the images have no field for.
type netlinkKind struct{}

// netlinkProtocols are the protocols of the netlink sockets kept.
var netlinkProtocols = map[int]bool{
	unix.NETLINK_ROUTE: true, unix.NETLINK_SOCK_DIAG: true, unix.NETLINK_KOBJECT_UEVENT: true, unix.NETLINK_AUDIT: true,
}

// netlinkOpts are the SOL_NETLINK flags a socket may have, off on a new
// one, which netlink_sk_entry cannot hold.
var netlinkOpts = []struct {
	opt  int
	name string
}{
	{unix.NETLINK_PKTINFO, "NETLINK_PKTINFO"},
	{unix.NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"},
	{unix.NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS"},
	{unix.NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"},
	{unix.NETLINK_CAP_ACK, "NETLINK_CAP_ACK"},
	{unix.NETLINK_EXT_ACK, "NETLINK_EXT_ACK"},
	{unix.NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"},
}

// netlinkConnected is the state of a connected netlink socket
// (NETLINK_CONNECTED, net/netlink/af_netlink.h).
const netlinkConnected = 1

func (netlinkKind) typ() pb.FdTypes { return pb.FdTypes_NETLINKSK }

func (netlinkKind) claims(d *desc) bool {
	return d.mode() == unix.S_IFSOCK && sockProtoName(d) == "NETLINK"
}

func (netlinkKind) dump(t *Table, d *desc) (uint32, error) {
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	protocol, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return 0, fmt.Errorf("read netlink protocol: %w", err)
	}
	if !netlinkProtocols[protocol] {
		return 0, fmt.Errorf("%w: netlink socket of protocol %d (NETLINK_ROUTE, NETLINK_SOCK_DIAG, NETLINK_KOBJECT_UEVENT and NETLINK_AUDIT are kept)", ErrUnsupported, protocol)
	}
	if protocol == unix.NETLINK_AUDIT {
		daemon, err := kernel.AuditDaemonPid()
		if err != nil {
			return 0, err
		}
		if daemon != 0 && int(daemon) == t.pid {
			return 0, fmt.Errorf("%w: NETLINK_AUDIT socket of the audit daemon: the kernel's registration of it ends with the process", ErrUnsupported)
		}
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || (typ != unix.SOCK_RAW && typ != unix.SOCK_DGRAM) {
		return 0, fmt.Errorf("netlink socket of type %d: %w", typ, err)
	}
	for _, o := range netlinkOpts {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_NETLINK, o.opt); err != nil {
			return 0, fmt.Errorf("read %s: %w", o.name, err)
		} else if v != 0 {
			return 0, fmt.Errorf("%w: netlink socket option %s (a checkpoint cannot hold it)", ErrUnsupported, o.name)
		}
	}
	var one [1]byte
	if n, _, err := unix.Recvfrom(fd, one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC); err == nil {
		return 0, fmt.Errorf("%w: netlink socket with a message of %d bytes queued", ErrUnsupported, n)
	} else if !errors.Is(err, unix.EAGAIN) {
		return 0, fmt.Errorf("peek netlink queue: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("read netlink address: %w", err)
	}
	local, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("netlink socket address %T", sa)
	}
	// Every group, past the 32 the address holds.
	buf := make([]byte, 64)
	n, err := kernel.GetsockoptBytes(fd, unix.SOL_NETLINK, unix.NETLINK_LIST_MEMBERSHIPS, buf)
	if err == nil && n > len(buf) {
		buf = make([]byte, n)
		n, err = kernel.GetsockoptBytes(fd, unix.SOL_NETLINK, unix.NETLINK_LIST_MEMBERSHIPS, buf)
	}
	if err != nil {
		return 0, fmt.Errorf("read netlink groups: %w", err)
	}
	var groups []uint32
	for i := 0; i+4 <= min(n, len(buf)); i += 4 {
		groups = append(groups, binary.NativeEndian.Uint32(buf[i:]))
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	opts, err := DumpSockOpts(fd, false)
	if err != nil {
		return 0, err
	}
	id := t.nextID()
	e := &pb.NetlinkSkEntry{
		Id: id, Ino: uint32(d.st.Ino), Protocol: uint32(protocol),
		State: 0, Flags: statusFlags(d.info), Portid: local.Pid, Groups: groups,
		DstPortid: 0, DstGroup: 0, Fown: &pb.FownEntry{}, Opts: opts,
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		if peer, ok := sa.(*unix.SockaddrNetlink); ok && (peer.Pid != 0 || peer.Groups != 0) {
			e.State = netlinkConnected
			e.DstPortid, e.DstGroup = peer.Pid, peer.Groups
		}
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_NETLINKSK, Id: id, Entry: e}), nil
}

func (netlinkKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetNlsk()
	switch {
	case e == nil:
		return imageErr("file %d: NETLINKSK without a netlink entry", f.GetId())
	case e.Opts == nil:
		return imageErr("file %d: netlink socket without options", f.GetId())
	case !netlinkProtocols[int(e.GetProtocol())]:
		return fmt.Errorf("%w: file %d: netlink socket of protocol %d", ErrUnsupported, f.GetId(), e.GetProtocol())
	case len(e.Groups) > 32:
		return imageErr("file %d: netlink socket in %d words of groups", f.GetId(), len(e.Groups))
	}
	return nil
}

// open makes the netlink socket as the process, binds it to its port
// and groups and connects it, then gives it to the process.
func (netlinkKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetNlsk()
	typ := unix.SOCK_RAW
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := r.socketAsProcess(unix.AF_NETLINK, typ, int(e.GetProtocol()))
	if err != nil {
		return -1, err
	}
	err = func() error {
		if err := RestoreSockOpts(fd, e.Opts); err != nil {
			return err
		}
		// The address holds the first 32 groups, the others are joined
		// one by one.
		first := uint32(0)
		if len(e.Groups) > 0 {
			first = e.Groups[0]
		}
		if e.GetPortid() != 0 || first != 0 {
			if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: e.GetPortid(), Groups: first}); err != nil {
				return fmt.Errorf("bind netlink socket to port %d: %w", e.GetPortid(), err)
			}
		}
		for w, bits := range e.Groups[min(1, len(e.Groups)):] {
			for b := range 32 {
				if bits&(1<<b) == 0 {
					continue
				}
				group := 32*(w+1) + b + 1
				if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, group); err != nil {
					return fmt.Errorf("join netlink group %d: %w", group, err)
				}
			}
		}
		if e.GetState() == netlinkConnected {
			if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: e.GetDstPortid(), Groups: e.GetDstGroup()}); err != nil {
				return fmt.Errorf("connect netlink socket to port %d: %w", e.GetDstPortid(), err)
			}
		}
		return nil
	}()
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
