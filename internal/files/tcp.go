package files

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/netlock"
)

// An established TCP connection is dumped and restored with TCP repair
// mode, on cryo's duplicate of the process's socket (cryo has
// CAP_NET_ADMIN, which repair mode needs). At dump, the connections of
// the checkpoint are first locked (netlock: their packets dropped both
// ways), then put in repair mode, in which the kernel tells their
// sequence numbers, window and options and lets both queues be read
// without consuming them; each goes into tcp-stream-INO.img (CRIU's
// tcp_stream_entry, the receive queue then the send queue after it).
// A dump that kills the process leaves the sockets in repair mode, so
// that closing them sends nothing, and keeps the lock past cryo's exit; one
// that lets it run, or fails, takes them out of repair mode and releases
// the lock. The lock's id is not in the images: it is made from them
// (lockID: the inodes of the connections), so that the restore finds it.
//
// The restore makes the socket in the process, puts it in repair mode,
// sets its sequence numbers, binds it to its address (repair mode lets
// it share the port of a listener) and connects it (no packet is sent),
// then sets its options, window and queues: what was sent and not
// acknowledged goes back as sent, so that it is retransmitted; what was
// not sent yet is sent out of repair mode. The sockets leave repair mode
// when the processes are about to run (ResumeConnections), and the
// lock goes then: the lock kept by the dump, or one the restore took if
// it was gone.

// TCP states (include/net/tcp_states.h) besides unixsk.go's: a
// connection shut down for writing, its FIN sent, one whose peer's FIN
// came, and a socket not connected (a UDP one too).
const (
	tcpFinWait1  = 4
	tcpFinWait2  = 5
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// isConnection reports whether a TCP socket in state is a connection
// cryo keeps: established, shut down for writing (FIN_WAIT1, its FIN sent
// or queued, or FIN_WAIT2, its FIN acknowledged), its peer's FIN come
// (CLOSE_WAIT), or both (LAST_ACK, CLOSING: its own FIN not acknowledged).
func isConnection(state uint32) bool {
	switch state {
	case tcpEstablished, tcpFinWait1, tcpFinWait2, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}

// sentFin reports whether a connection in state has sent its FIN, and
// finAcked whether it is acknowledged.
func sentFin(state uint32) bool {
	return state == tcpFinWait1 || state == tcpFinWait2 || state == tcpLastAck || state == tcpClosing
}

func finAcked(state uint32) bool { return state == tcpFinWait2 }

// gotFin reports whether a connection in state has had its peer's FIN.
func gotFin(state uint32) bool {
	return state == tcpCloseWait || state == tcpLastAck || state == tcpClosing
}

// shutdownOf is the sk_shutdown of a connection in state: its own FIN
// shuts it down for writing, its peer's for reading.
func shutdownOf(state uint32) uint8 {
	var sh uint8
	if sentFin(state) {
		sh |= kernel.SendShutdown
	}
	if gotFin(state) {
		sh |= kernel.RcvShutdown
	}
	return sh
}

// tcpTable is the established TCP connections a dump holds, locked and
// in repair mode from LockConnections on.
type tcpTable struct {
	conns []*tcpConn
	lock  *netlock.Lock
	kept  bool
}

// tcpConn is an established connection being dumped.
type tcpConn struct {
	fd            int // cryo's duplicate
	e             *pb.InetSkEntry
	local, remote netip.AddrPort
	repaired      bool
	stream        *pb.TcpStreamEntry
	queues        []byte // the receive queue, then the send queue
}

func (t *tcpTable) addConnection(fd int, e *pb.InetSkEntry, local, remote netip.AddrPort) error {
	// Shared by two processes, a socket is dumped once (sharedWith); a
	// loopback connection whose both ends are in the checkpoint is two
	// sockets, each dumped with its own stream.
	t.conns = append(t.conns, &tcpConn{fd: fd, e: e, local: local, remote: remote})
	return nil
}

// lockID is the id of the network lock of connections of these socket
// inodes: a digest of them all, after the lowest, which a dump and a
// restore of the same images both make.
func lockID(inos []uint32) string {
	inos = slices.Sorted(slices.Values(inos))
	h := fnv.New64a()
	for _, ino := range inos {
		h.Write([]byte{byte(ino), byte(ino >> 8), byte(ino >> 16), byte(ino >> 24)})
	}
	return fmt.Sprintf("tcp-%d-%016x", inos[0], h.Sum64())
}

// LockConnections locks the established TCP connections of the
// processes dumped, puts their sockets in repair mode and reads them.
// Every process's descriptors must be dumped first: the lock covers them
// all at once.
func (t *Table) LockConnections() error {
	if len(t.conns) == 0 {
		return nil
	}
	var conns []netlock.Conn
	var inos []uint32
	for _, c := range t.conns {
		conns = append(conns, netlock.Conn{Local: c.local, Remote: c.remote})
		inos = append(inos, c.e.GetIno())
	}
	lock, err := netlock.Take(lockID(inos), conns)
	if err != nil {
		return fmt.Errorf("lock the TCP connections: %w", err)
	}
	t.lock = lock
	for _, c := range t.conns {
		if err := unix.SetsockoptInt(c.fd, unix.SOL_TCP, unix.TCP_REPAIR, 1); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: repair mode: %w", c.local, c.remote, err)
		}
		c.repaired = true
		if c.stream, c.queues, err = t.dumpStream(c.fd, c.e.GetId()); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: %w", c.local, c.remote, err)
		}
	}
	return nil
}

// dumpStream reads a connection, entry id, in repair mode. Its peek
// offset, which the peeks at its receive queue would start from, is
// recorded and set aside meanwhile.
func (t *Table) dumpStream(fd int, id uint32) (*pb.TcpStreamEntry, []byte, error) {
	off, err := t.dumpPeekOff(fd, id)
	if err != nil {
		return nil, nil, err
	}
	if off != -1 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, -1); err != nil {
			return nil, nil, fmt.Errorf("set the peek offset aside: %w", err)
		}
		defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	}
	info, err := kernel.GetTCPInfoHead(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("read TCP_INFO: %w", err)
	}
	if !isConnection(uint32(info.State)) {
		return nil, nil, fmt.Errorf("%w: in state %s", ErrUnsupported, tcpStateName(uint32(info.State)))
	}
	// A FIN not acknowledged yet counts in the send queue's length (and
	// in what is not sent, until it is), not in its data; the queue's
	// sequence, CRIU's outq_seq, counts it. So does the receive queue's,
	// inq_seq, the peer's FIN, which its length does not count.
	fin := 0
	if state := uint32(info.State); sentFin(state) && !finAcked(state) {
		fin = 1
	}
	queue := func(q, lenIoctl int, name string, fin int) (uint32, []byte, error) {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
			return 0, nil, fmt.Errorf("select the %s queue: %w", name, err)
		}
		seq, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
		if err != nil {
			return 0, nil, fmt.Errorf("read the %s queue's sequence: %w", name, err)
		}
		n, err := unix.IoctlGetInt(fd, uint(lenIoctl))
		if err != nil {
			return 0, nil, fmt.Errorf("read the %s queue's length: %w", name, err)
		}
		if n -= fin; n < 0 {
			return 0, nil, fmt.Errorf("the %s queue's length %d does not count its FIN", name, n+fin)
		}
		data := make([]byte, n)
		if n > 0 {
			got, _, err := unix.Recvfrom(fd, data, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err != nil {
				return 0, nil, fmt.Errorf("read the %s queue: %w", name, err)
			}
			if got != n {
				return 0, nil, fmt.Errorf("%w: %s queue read %d of %d bytes (urgent data?)", ErrUnsupported, name, got, n)
			}
		}
		return uint32(seq), data, nil
	}
	inSeq, in, err := queue(kernel.TCPRecvQueue, unix.SIOCINQ, "receive", 0)
	if err != nil {
		return nil, nil, err
	}
	outSeq, out, err := queue(kernel.TCPSendQueue, unix.SIOCOUTQ, "send", fin)
	if err != nil {
		return nil, nil, err
	}
	unsent, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
	if err != nil {
		return nil, nil, fmt.Errorf("read the unsent length: %w", err)
	}
	if unsent > 0 {
		unsent -= fin
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, 0); err != nil {
		return nil, nil, fmt.Errorf("select no queue: %w", err)
	}
	// In repair mode TCP_MAXSEG says the MSS clamp, the peer's.
	mss, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return nil, nil, fmt.Errorf("read the MSS: %w", err)
	}
	w, err := kernel.GetTCPRepairWindow(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("read the window: %w", err)
	}
	s := &pb.TcpStreamEntry{
		InqLen: uint32(len(in)), InqSeq: inSeq,
		OutqLen: uint32(len(out)), OutqSeq: outSeq,
		OptMask: uint32(info.Options), MssClamp: uint32(mss),
		SndWscale: uint32(info.Wscale & 0xf), RcvWscale: pb.Uint32(uint32(info.Wscale >> 4)),
		UnsqLen: pb.Uint32(uint32(unsent)),
		SndWl1:  pb.Uint32(w.SndWl1), SndWnd: pb.Uint32(w.SndWnd), MaxWindow: pb.Uint32(w.MaxWindow),
		RcvWnd: pb.Uint32(w.RcvWnd), RcvWup: pb.Uint32(w.RcvWup),
	}
	if info.Options&kernel.TCPIOptTimestamps != 0 {
		ts, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return nil, nil, fmt.Errorf("read the timestamp: %w", err)
		}
		s.Timestamp = pb.Uint32(uint32(ts))
	}
	return s, append(in, out...), nil
}

// ReleaseConnections lets the connections go on where they are, for a
// dump that leaves the processes running: their sockets leave repair
// mode and the lock goes.
func (t *Table) ReleaseConnections() error {
	if t.kept {
		// The processes are gone: their sockets stay in repair mode
		// until cryo's duplicates close, so that they send nothing.
		return nil
	}
	var errs []error
	for _, c := range t.conns {
		if c.repaired {
			// Without the window probe leaving repair mode sends: nothing
			// changed.
			if err := unix.SetsockoptInt(c.fd, unix.SOL_TCP, unix.TCP_REPAIR, kernel.TCPRepairOffNoProbe); err != nil {
				errs = append(errs, fmt.Errorf("TCP connection %v -> %v: leave repair mode: %w", c.local, c.remote, err))
			}
			c.repaired = false
		}
	}
	if t.lock != nil {
		errs = append(errs, t.lock.Release())
		t.lock = nil
	}
	return errors.Join(errs...)
}

// KeepConnections keeps the lock past cryo's exit, for a dump that
// kills the processes: their sockets close in repair mode, sending
// nothing, and their peers' packets are dropped until the restore.
func (t *Table) KeepConnections() error {
	if t.lock == nil {
		return nil
	}
	if err := t.lock.Keep(); err != nil {
		return err
	}
	t.kept = true
	return nil
}

// closeConnections closes cryo's duplicates; connections neither kept
// nor released (the dump failed) are released first.
func (t *Table) closeConnections() error {
	err := t.ReleaseConnections()
	for _, c := range t.conns {
		unix.Close(c.fd)
	}
	t.conns = nil
	return err
}

// writeStreams writes each connection's tcp-stream image.
func (t *tcpTable) writeStreams(dir *image.Dir) error {
	for _, c := range t.conns {
		if c.stream == nil {
			return fmt.Errorf("TCP connection %v -> %v not read (LockConnections)", c.local, c.remote)
		}
		w, err := dir.Create(image.TCPStream, c.e.GetIno())
		if err != nil {
			return err
		}
		err = w.Write(c.stream)
		if err == nil {
			err = w.WritePayload(c.queues)
		}
		if err := errors.Join(err, w.Close()); err != nil {
			return err
		}
	}
	return nil
}

// tcpSet is the streams of a checkpoint's connections, read and
// checked with their entries.
type tcpSet struct {
	streams map[uint32]*tcpStream // by socket inode
}

type tcpStream struct {
	*pb.TcpStreamEntry
	in, out []byte
}

// checkConnection reads the stream of an established connection.
func (s *Set) checkConnection(f *pb.FileEntry) error {
	ino := f.GetIsk().GetIno()
	if _, ok := s.streams[ino]; ok {
		return nil
	}
	r, err := s.dir.Open(image.TCPStream, ino)
	if err != nil {
		return fmt.Errorf("%w: TCP connection of file %d: %w", ErrImage, f.GetId(), err)
	}
	defer r.Close()
	e := &pb.TcpStreamEntry{}
	if err := r.Next(e); err != nil {
		return fmt.Errorf("%w: TCP connection of file %d: %w", ErrImage, f.GetId(), err)
	}
	data, err := io.ReadAll(r.Payload())
	if err != nil {
		return fmt.Errorf("%w: TCP connection of file %d: %w", ErrImage, f.GetId(), err)
	}
	switch {
	case e.GetUnsqLen() > e.GetOutqLen():
		return imageErr("TCP connection of file %d: %d bytes unsent of a send queue of %d", f.GetId(), e.GetUnsqLen(), e.GetOutqLen())
	case e.GetSndWscale() > 14 || e.GetRcvWscale() > 14:
		return imageErr("TCP connection of file %d: window scales %d and %d", f.GetId(), e.GetSndWscale(), e.GetRcvWscale())
	}
	if s.streams == nil {
		s.streams = map[uint32]*tcpStream{}
	}
	s.streams[ino] = &tcpStream{TcpStreamEntry: e, in: data[:e.GetInqLen()], out: data[e.GetInqLen():]}
	return nil
}

// tcpShared is the restore's connections, in repair mode until
// ResumeConnections, and its lock.
type tcpShared struct {
	// CloseConnections restores established connections closed, shut
	// down both ways (--tcp-close).
	CloseConnections bool
	conns            []*restoredConn
	// lockID is the lock of the checkpoint's connections, "" until the
	// first is restored; lock is the one the restore took, if the dump's
	// was not kept.
	lockID string
	lock   *netlock.Lock
}

type restoredConn struct {
	fd     int // cryo's duplicate
	src    netip.AddrPort
	dst    netip.AddrPort
	unsent []byte
	reuse  bool // SO_REUSEADDR, which leaving repair mode clears
	// shut is whether it was shut down for writing: its FIN is sent
	// again after what it had not sent.
	shut bool
	// fin is the FIN its peer had sent (CLOSE_WAIT, LAST_ACK, CLOSING),
	// which the peer does not send again: the restore crafts it, as an
	// IP packet from the peer; nil if none.
	fin []byte
	// opts are its socket options: its send buffer is larger until what
	// it had not sent is queued again.
	opts *pb.SkOptsEntry
}

// lockConnections makes sure the connections of the checkpoint (every
// established one of files.img) are locked: by the lock the dump kept,
// or by one taken now.
func (r *Restorer) lockConnections() error {
	sh := r.shared
	if sh.lockID != "" {
		return nil
	}
	var conns []netlock.Conn
	var inos []uint32
	for _, f := range r.set.Files {
		e := f.GetIsk()
		if e == nil || e.GetProto() != unix.IPPROTO_TCP || !isConnection(e.GetState()) {
			continue
		}
		src, _ := wordsAddr(e.GetFamily(), e.SrcAddr, e.GetSrcPort())
		dst, _ := wordsAddr(e.GetFamily(), e.DstAddr, e.GetDstPort())
		conns = append(conns, netlock.Conn{Local: src, Remote: dst})
		inos = append(inos, e.GetIno())
	}
	id := lockID(inos)
	kept, err := netlock.Locks()
	if err != nil {
		return err
	}
	if !slices.Contains(kept, id) {
		if sh.lock, err = netlock.Take(id, conns); err != nil {
			return fmt.Errorf("lock the TCP connections: %w", err)
		}
	}
	sh.lockID = id
	return nil
}

// restoreConnection makes socket fd, which cryo holds, the connection
// of entry f again, in repair mode until ResumeConnections, which closes
// the duplicate it keeps.
func (r *Restorer) restoreConnection(fd int, f *pb.FileEntry) error {
	e := f.GetIsk()
	if err := r.lockConnections(); err != nil {
		return err
	}
	if r.shared.CloseConnections {
		if err := RestoreSockOpts(fd, e.Opts); err != nil {
			return err
		}
		if err := restoreInetOpts(fd, e); err != nil {
			return err
		}
		// Shut down both ways, as a connection that ended: reads find
		// the end of the stream, writes EPIPE, where a socket never
		// connected would say ENOTCONN. On a socket not connected
		// shutdown sets that and says ENOTCONN.
		if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil && !errors.Is(err, unix.ENOTCONN) {
			return fmt.Errorf("shut down the connection restored closed: %w", err)
		}
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicate socket: %w", err)
	}
	c := &restoredConn{fd: dup, reuse: e.Opts.GetReuseaddr(), shut: sentFin(e.GetState()), opts: e.Opts}
	c.src, _ = wordsAddr(e.GetFamily(), e.SrcAddr, e.GetSrcPort())
	c.dst, _ = wordsAddr(e.GetFamily(), e.DstAddr, e.GetDstPort())
	r.shared.conns = append(r.shared.conns, c)
	s := r.set.streams[e.GetIno()]
	if err := restoreStream(fd, e, s, c); err != nil {
		return fmt.Errorf("TCP connection %v -> %v: %w", c.src, c.dst, err)
	}
	if gotFin(e.GetState()) {
		c.fin = peerFin(c, s)
	}
	return nil
}

// peerFin returns the FIN that the peer of connection c, restored from
// stream s, had sent: its sequence number the one after the data queued,
// acknowledging what c's peer had acknowledged, with the window it had
// advertised.
func peerFin(c *restoredConn, s *tcpStream) []byte {
	una := s.GetOutqSeq() - s.GetOutqLen()
	if c.shut {
		una--
	}
	window := uint32(0xffff)
	if s.SndWnd != nil {
		window = min(s.GetSndWnd()>>s.GetSndWscale(), window)
	}
	from, to := c.dst, c.src
	if from.Addr().Is4In6() {
		// An IPv6 socket's connection over IPv4 gets IPv4 packets.
		from, to = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	return kernel.TCPFin(from, to, s.GetInqSeq()-1, una, uint16(window))
}

// restoreStream sets up socket fd as connection e with stream s, and
// leaves it in repair mode.
func restoreStream(fd int, e *pb.InetSkEntry, s *tcpStream, c *restoredConn) error {
	if err := RestoreSockOpts(fd, e.Opts); err != nil {
		return err
	}
	// Before bind, which fixes IPV6_V6ONLY.
	if err := restoreInetOpts(fd, e); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, 1); err != nil {
		return fmt.Errorf("repair mode: %w", err)
	}
	setSeq := func(q int, seq uint32) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
			return fmt.Errorf("select queue %d: %w", q, err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(int32(seq))); err != nil {
			return fmt.Errorf("set queue %d's sequence: %w", q, err)
		}
		return nil
	}
	// The peer's FIN is in inq_seq, and comes again once the
	// socket has left repair mode (ResumeConnections).
	finIn := uint32(0)
	if gotFin(e.GetState()) {
		finIn = 1
	}
	if err := setSeq(kernel.TCPRecvQueue, s.GetInqSeq()-s.GetInqLen()-finIn); err != nil {
		return err
	}
	// The FIN of a connection shut down for writing is in outq_seq and
	// is sent again (ResumeConnections).
	fin := uint32(0)
	if c.shut {
		fin = 1
	}
	if err := setSeq(kernel.TCPSendQueue, s.GetOutqSeq()-s.GetOutqLen()-fin); err != nil {
		return err
	}
	if err := unix.Bind(fd, sockaddr(e.GetFamily(), c.src)); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Connect(fd, sockaddr(e.GetFamily(), c.dst)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	opts := []unix.TCPRepairOpt{{Code: unix.TCPOPT_MAXSEG, Val: s.GetMssClamp()}}
	mask := s.GetOptMask()
	if mask&kernel.TCPIOptWscale != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: s.GetSndWscale() | s.GetRcvWscale()<<16})
	}
	if mask&kernel.TCPIOptSack != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if mask&kernel.TCPIOptTimestamps != 0 {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.SOL_TCP, unix.TCP_REPAIR_OPTIONS, opts); err != nil {
		return fmt.Errorf("set options %v: %w", opts, err)
	}
	if mask&kernel.TCPIOptTimestamps != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, int(int32(s.GetTimestamp()))); err != nil {
			return fmt.Errorf("set the timestamp: %w", err)
		}
	}
	// What was sent goes back in repair mode, as sent; what was not is
	// sent when the socket leaves it. The queues held it all, but the
	// buffers they are made of again may take more room than they did:
	// the socket's buffers are larger until then.
	for _, b := range []struct {
		opt, size, queued int
	}{{unix.SO_SNDBUFFORCE, int(e.Opts.GetSoSndbuf()), len(s.out)}, {unix.SO_RCVBUFFORCE, int(e.Opts.GetSoRcvbuf()), len(s.in)}} {
		if b.queued == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.opt, b.size+2*b.queued); err != nil {
			return fmt.Errorf("grow a socket buffer: %w", err)
		}
	}
	sent := len(s.out) - int(s.GetUnsqLen())
	for _, q := range []struct {
		queue int
		data  []byte
	}{{kernel.TCPRecvQueue, s.in}, {kernel.TCPSendQueue, s.out[:sent]}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q.queue); err != nil {
			return fmt.Errorf("select queue %d: %w", q.queue, err)
		}
		if err := sendAll(fd, q.data); err != nil {
			return fmt.Errorf("fill queue %d with %d bytes: %w", q.queue, len(q.data), err)
		}
	}
	c.unsent = s.out[sent:]
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, 0); err != nil {
		return fmt.Errorf("select no queue: %w", err)
	}
	if s.RcvWnd != nil {
		w := repairWindow(s.TcpStreamEntry, finIn)
		if err := kernel.SetTCPRepairWindow(fd, w); err != nil {
			return fmt.Errorf("set the window %+v: %w", w, err)
		}
	}
	return nil
}

// sendAll writes data into the queue selected, which may take it in
// parts.
func sendAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.SendmsgN(fd, data, nil, nil, unix.MSG_DONTWAIT)
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// ResumeConnections takes the restored connections out of repair mode,
// sends what they had not sent yet, removes the lock, and gives the
// connections whose peer had sent its FIN that FIN: the processes are
// about to run.
func (s *Shared) ResumeConnections() error {
	defer func() {
		for _, c := range s.conns {
			unix.Close(c.fd)
		}
		s.conns = nil
	}()
	for _, c := range s.conns {
		if err := unix.SetsockoptInt(c.fd, unix.SOL_TCP, unix.TCP_REPAIR, 0); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: leave repair mode: %w", c.src, c.dst, err)
		}
		if c.reuse {
			if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return fmt.Errorf("TCP connection %v -> %v: set SO_REUSEADDR: %w", c.src, c.dst, err)
			}
		}
		if err := sendAll(c.fd, c.unsent); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: send %d bytes not sent before the dump: %w", c.src, c.dst, len(c.unsent), err)
		}
		// A FIN the peer had acknowledged comes to it again, as a
		// duplicate it acknowledges again. One sent after the peer's
		// (LAST_ACK) is sent after it comes again, below.
		if c.shut && c.fin == nil {
			if err := shutWrite(c); err != nil {
				return err
			}
		}
		// The send buffer as it was (RestoreSockOpts sets it, then the
		// lock of its size).
		if err := RestoreSockOpts(c.fd, &pb.SkOptsEntry{SoSndbuf: c.opts.SoSndbuf, SoRcvbuf: c.opts.SoRcvbuf, SoBufLock: c.opts.SoBufLock}); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: %w", c.src, c.dst, err)
		}
	}
	if s.lockID != "" {
		var err error
		if s.lock != nil {
			err = s.lock.Release()
		} else {
			err = netlock.Unlock(s.lockID)
		}
		s.lock, s.lockID = nil, ""
		if err != nil {
			return err
		}
	}
	// The peers' FINs, which the lock would have dropped.
	for _, c := range s.conns {
		if c.fin == nil {
			continue
		}
		if err := receiveFin(c); err != nil {
			return fmt.Errorf("TCP connection %v -> %v: %w", c.src, c.dst, err)
		}
		if c.shut {
			if err := shutWrite(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func shutWrite(c *restoredConn) error {
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("TCP connection %v -> %v: shut down for writing: %w", c.src, c.dst, err)
	}
	return nil
}

// finWait bounds how long a restore waits for a FIN it crafted to reach
// its socket.
const finWait = 5 * time.Second

// receiveFin sends connection c the FIN of its peer, through a raw
// socket, and waits until it has come: through the loopback device, it
// reaches the socket from the CPU's backlog, maybe after sendto returns.
func receiveFin(c *restoredConn) error {
	to := c.src.Addr().Unmap()
	s, err := rawSocket(to.Is4())
	if err != nil {
		return err
	}
	defer unix.Close(s)
	if err := unix.Sendto(s, c.fin, 0, rawSockaddr(to)); err != nil {
		return fmt.Errorf("send the peer's FIN again: %w", err)
	}
	for deadline := time.Now().Add(finWait); ; time.Sleep(time.Millisecond) {
		info, err := kernel.GetTCPInfoHead(c.fd)
		if err != nil {
			return fmt.Errorf("read TCP_INFO: %w", err)
		}
		if info.State == tcpCloseWait {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the peer's FIN, sent again, did not reach the socket in %v (state %s)", finWait, tcpStateName(uint32(info.State)))
		}
	}
}

// closeConnections closes cryo's duplicates: before ResumeConnections,
// those of a failed restore, whose sockets close in repair mode, sending
// nothing; a lock the restore took goes, one the dump kept stays for the
// next.
func (s *Shared) closeConnections() {
	for _, c := range s.conns {
		unix.Close(c.fd)
	}
	s.conns = nil
	if s.lock != nil {
		s.lock.Release()
		s.lock, s.lockID = nil, ""
	}
}

// repairWindow is the window to give connection s back with
// TCP_REPAIR_WINDOW once its receive queue is back (finIn: 1 if that
// counts the peer's FIN), which the kernel takes only within what was
// received in order.
func repairWindow(s *pb.TcpStreamEntry, finIn uint32) kernel.TCPRepairWindow {
	w := kernel.TCPRepairWindow{SndWl1: s.GetSndWl1(), SndWnd: s.GetSndWnd(), MaxWindow: s.GetMaxWindow(), RcvWnd: s.GetRcvWnd(), RcvWup: s.GetRcvWup()}
	rcvNxt := s.GetInqSeq() - finIn
	// Where the window was last advertised may count the peer's FIN,
	// which has not come yet: not past what has.
	if int32(w.RcvWup-rcvNxt) > 0 {
		w.RcvWup = rcvNxt
	}
	// The segment that last moved the send window may be one the socket
	// held out of order, past what it had received in order (its
	// receive buffer full): such segments are not kept, the peer sends
	// them again, and the kernel refuses a window updated from past the
	// receive window (EINVAL; zdtm socket-tcpbuf-local, now and then).
	// Any segment from what was received on may update it again.
	if int32(w.SndWl1-(rcvNxt+w.RcvWnd)) > 0 {
		w.SndWl1 = rcvNxt
	}
	return w
}
