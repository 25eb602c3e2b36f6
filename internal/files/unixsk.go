package files

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// unixKind is a unix socket (CRIU's UNIXSK). The dump learns from
// sock_diag what the descriptor does not tell: its peer, its name and the
// file it is bound at, the connections its listening socket has not
// accepted, its shutdown state. The data queued to it is read without
// being consumed (MSG_PEEK at a peek offset moved along, on a duplicate)
// into sk-queues.img, one record per datagram, with its sender's address
// and credentials, and the descriptors in flight with it (SCM_RIGHTS) as
// file entries. Peers must be in the checkpoint, but for criu's exception
// (--ext-unix-sk): a datagram socket connected to a bound name outside
// it. The restore is in unixsk_restore.go.
type unixKind struct{}

// The states of sk_state that tell a unix socket's
// (include/net/tcp_states.h): connected (or, for a datagram socket, one
// others connected to), and listening.
const (
	tcpEstablished = 1
	tcpListen      = 10
)

// uskExtern is CRIU's USK_EXTERN flag of unix_sk_entry.uflags: the
// entry is a socket outside the checkpoint that one of it is connected
// to, not made at restore.
const uskExtern = 1

func (unixKind) typ() pb.FdTypes { return pb.FdTypes_UNIXSK }

func (unixKind) claims(d *desc) bool {
	return d.mode() == unix.S_IFSOCK && socketFamily(d) == unix.AF_UNIX
}

// socketFamily is the address family of the socket behind d, told by the
// name of its protocol (sockfs's extended attribute
// system.sockprotoname); -1 if not one cryo knows.
func socketFamily(d *desc) int {
	v := make([]byte, 16)
	n, err := unix.Getxattr(d.path, "system.sockprotoname", v)
	if err != nil {
		return -1
	}
	switch string(bytes.TrimRight(v[:n], "\x00")) {
	case "UNIX", "UNIX-STREAM":
		return unix.AF_UNIX
	}
	return -1
}

// unixTable is what a dump records of unix sockets.
type unixTable struct {
	// ExtUnixSk is criu's --ext-unix-sk: a datagram socket connected to
	// a bound socket outside the checkpoint is kept, and connected to
	// that name again at restore.
	ExtUnixSk bool
	// socks is what sock_diag says of every unix socket, asked once.
	socks map[uint32]*kernel.UnixSock
	// dumped are the sockets recorded, by inode.
	dumped map[uint32]*unixDumped
	order  []uint32
	queues []unixPacket
	// inFlight are cryo's descriptors of the files in flight in the
	// queues, kept for kcmp until every process is dumped; unresolved
	// those held by no process dumped before.
	inFlight   []int
	unresolved []inFlight
}

// unixDumped is a socket recorded and the descriptor it was found at.
type unixDumped struct {
	e       *pb.UnixSkEntry
	pid, fd int
}

func (u *unixDumped) String() string {
	return fmt.Sprintf("fd %d of pid %d (unix socket %s)", u.fd, u.pid, sockName(u.e.Name))
}

// unixPacket is a datagram, or a run of stream bytes, queued to a socket.
type unixPacket struct {
	e    *pb.SkPacketEntry
	data []byte
}

// sockName says a unix socket's name for people.
func sockName(name []byte) string {
	switch {
	case len(name) == 0:
		return "unnamed"
	case name[0] == 0:
		return strconv.Quote("@" + string(name[1:]))
	}
	return strconv.Quote(string(bytes.TrimRight(name, "\x00")))
}

func (unixKind) dump(t *Table, d *desc) (uint32, error) {
	if t.unixTable.socks == nil {
		socks, err := kernel.UnixSockets()
		if err != nil {
			return 0, err
		}
		t.unixTable.socks, t.unixTable.dumped = socks, map[uint32]*unixDumped{}
	}
	s := t.unixTable.socks[uint32(d.st.Ino)]
	if s == nil {
		return 0, fmt.Errorf("%w: unix socket inode %d is not in this network namespace", ErrUnsupported, d.st.Ino)
	}
	if u, ok := t.unixTable.dumped[s.Ino]; ok {
		// A socket is one open file description: this one is in
		// flight in a queue being read, or in its own.
		return u.e.GetId(), nil
	}
	dup, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(dup)
	opts, err := DumpSockOpts(dup, true)
	if err != nil {
		return 0, err
	}
	id := t.nextID()
	if err := t.dumpKeptOpts(dup, id, unix.AF_UNIX); err != nil {
		return 0, fmt.Errorf("unix socket %s: %w", sockName(s.Name), err)
	}
	e := &pb.UnixSkEntry{
		Id: id, Ino: s.Ino, Type: uint32(s.Type), State: uint32(s.State),
		Flags: statusFlags(d.info), Uflags: 0, Backlog: 0, Peer: s.Peer,
		Fown: &pb.FownEntry{}, Opts: opts, Name: s.Name,
	}
	if e.Name == nil {
		e.Name = []byte{}
	}
	if s.State == tcpListen {
		e.Backlog = s.Wqueue
	}
	if s.Shutdown != 0 {
		e.Shutdown = pb.SkShutdown(s.Shutdown & 3).Enum()
	}
	if err := t.unixTable.dumpFile(t.view, e, s); err != nil {
		return 0, fmt.Errorf("unix socket %s: %w", sockName(s.Name), err)
	}
	// Recorded before its queue, whose descriptors in flight get
	// entries of their own.
	t.unixTable.dumped[s.Ino] = &unixDumped{e: e, pid: t.pid, fd: d.fd}
	t.unixTable.order = append(t.unixTable.order, s.Ino)
	t.add(&pb.FileEntry{Type: pb.FdTypes_UNIXSK, Id: id, Entry: e})
	// A stream socket has a queue once connected; a datagram one always.
	if s.State == tcpEstablished || s.Type == unix.SOCK_DGRAM {
		err = t.dumpUnixQueue(dup, e, s)
	} else {
		_, err = t.dumpPeekOff(dup, id)
	}
	if err != nil {
		return 0, fmt.Errorf("unix socket %s: %w", sockName(s.Name), err)
	}
	return id, nil
}

// dumpFile records the file a socket bound to a path is at: its owner
// and mode, or that it was removed (or replaced) since, and the working
// directory a relative name is in.
func (u *unixTable) dumpFile(pid int, e *pb.UnixSkEntry, s *kernel.UnixSock) error {
	if len(s.Name) == 0 || s.Name[0] == 0 {
		return nil
	}
	name := string(bytes.TrimRight(s.Name, "\x00"))
	at := name
	if !filepath.IsAbs(name) {
		cwd, err := os.Readlink(proc.Path(pid, "cwd"))
		if err != nil {
			return fmt.Errorf("read working directory: %w", err)
		}
		e.NameDir = pb.String(cwd)
		at = filepath.Join(cwd, name)
	}
	var st unix.Stat_t
	err := unix.Lstat(proc.Path(pid, "root")+at, &st)
	if s.VFS == nil || err != nil || uint32(st.Ino) != s.VFS.Ino || unix.Major(st.Dev) != s.VFS.Dev>>20 || unix.Minor(st.Dev) != s.VFS.Dev&0xfffff {
		e.Deleted = pb.Bool(true)
		return nil
	}
	e.FilePerms = &pb.FilePermsEntry{Mode: st.Mode, Uid: st.Uid, Gid: st.Gid}
	return nil
}

// dumpUnixQueue reads what is queued to the socket without taking it: at
// a peek offset (SO_PEEK_OFF) moved along by each MSG_PEEK, set back
// after. Credentials are read as the process would with SO_PASSCRED. A
// descriptor in flight (SCM_RIGHTS), which the peek installs in cryo, is
// recorded as a file entry (dumpInFlight).
func (t *Table) dumpUnixQueue(fd int, e *pb.UnixSkEntry, s *kernel.UnixSock) error {
	u := &t.unixTable
	off, err := t.dumpPeekOff(fd, e.GetId())
	if err != nil {
		return err
	}
	passcred := e.Opts.GetSoPasscred()
	if !passcred {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			return fmt.Errorf("set SO_PASSCRED: %w", err)
		}
		defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 0)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return fmt.Errorf("set peek offset: %w", err)
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	stream := s.Type == unix.SOCK_STREAM
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(253*4))
	for {
		n, oobn, flags, from, err := kernel.Recvmsg(fd, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC|unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("peek queue: %w", err)
		}
		cred, rights, err := parseControl(oob[:oobn])
		u.inFlight = append(u.inFlight, rights...) // closed once every process is dumped
		if err != nil {
			return err
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fmt.Errorf("%w: control messages in its queue that cryo cannot read", ErrUnsupported)
		}
		if n > len(buf) {
			// A datagram larger than buf: peek it again, whole. The
			// offset went past what was copied only. (Its descriptors,
			// installed again, are the same files.)
			back, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
			if err == nil {
				err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, back-len(buf))
			}
			if err != nil {
				return fmt.Errorf("rewind peek offset: %w", err)
			}
			buf = make([]byte, n)
			continue
		}
		if n == 0 && (stream || s.Shutdown&1 != 0) {
			// The end of the stream, or of a socket shut for reading
			// (where a datagram of no bytes cannot be told from it).
			return nil
		}
		p := unixPacket{e: &pb.SkPacketEntry{IdFor: e.Id, Length: uint32(n)}, data: slices.Clone(buf[:n])}
		var addr []byte
		if !stream && len(from) > 0 {
			addr = from
		}
		setPacketExtras(p.e, addr, cred)
		if len(rights) > 0 {
			scm := &pb.ScmEntry{Type: unix.SCM_RIGHTS}
			for _, r := range rights {
				id, err := t.dumpInFlight(r, u.dumped[s.Ino].String())
				if err != nil {
					return fmt.Errorf("a descriptor in flight (SCM_RIGHTS) in its queue: %w", err)
				}
				scm.Rights = append(scm.Rights, id)
			}
			p.e.Scm = []*pb.ScmEntry{scm}
		}
		u.queues = append(u.queues, p)
	}
}

// parseControl reads the control messages of a peek: the credentials,
// and the descriptors it carried, installed in cryo (returned even with
// an error, for the caller to close).
func parseControl(b []byte) (*unix.Ucred, []int, error) {
	msgs, err := unix.ParseSocketControlMessage(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse control messages: %w", err)
	}
	var cred *unix.Ucred
	var rights []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET {
			return nil, rights, fmt.Errorf("%w: control message of level %d in its queue", ErrUnsupported, m.Header.Level)
		}
		switch m.Header.Type {
		case unix.SCM_CREDENTIALS:
			if cred, err = unix.ParseUnixCredentials(&m); err != nil {
				return nil, rights, err
			}
		case unix.SCM_RIGHTS:
			fds, err := unix.ParseUnixRights(&m)
			rights = append(rights, fds...)
			if err != nil {
				return nil, rights, err
			}
		case unix.SCM_TIMESTAMP, unix.SCM_TIMESTAMPNS, unix.SCM_TIMESTAMPING:
			// The socket asked when each message came (SO_TIMESTAMP):
			// the restore queues it again, and the kernel stamps it then.
		default:
			return nil, rights, fmt.Errorf("%w: control message of type %d in its queue", ErrUnsupported, m.Header.Type)
		}
	}
	return cred, rights, nil
}

// dumpInFlight records a descriptor in flight, installed in cryo as fd by
// a peek, and returns its entry: the open file description a process of
// the checkpoint holds, if one does (found by kcmp now or, held by one
// dumped later, once every process is: finishUnix), else a pipe or unix
// socket of its own. cryo keeps fd until every process is dumped.
func (t *Table) dumpInFlight(fd int, in string) (uint32, error) {
	self := os.Getpid()
	d := &desc{fd: fd, path: proc.Path(self, "fd/"+strconv.Itoa(fd))}
	if err := unix.Fstat(fd, &d.st); err != nil {
		return 0, err
	}
	ino := inode{dev: d.st.Dev, ino: d.st.Ino}
	id, at, err := t.sharedWith(self, fd, ino)
	if err != nil || id != 0 {
		return id, err
	}
	if d.link, err = os.Readlink(d.path); err != nil {
		return 0, err
	}
	if d.info, err = proc.ReadFdinfo(self, fd); err != nil {
		return 0, err
	}
	var k kind
	switch {
	case pipeKind{}.claims(d):
		k = pipeKind{}
	case unixKind{}.claims(d):
		k = unixKind{}
	default:
		// Held by a process not dumped yet, or refused then: a
		// placeholder id, from the top, no entry has.
		id = ^uint32(len(t.unixTable.unresolved))
		t.unixTable.unresolved = append(t.unixTable.unresolved, inFlight{fd: fd, ino: ino, id: id, link: d.link, in: in, pid: t.pid, view: t.view})
		return id, nil
	}
	pid, view := t.pid, t.view
	t.pid, t.view = self, self
	id, err = k.dump(t, d)
	t.pid, t.view = pid, view
	if err != nil {
		return 0, err
	}
	t.described[ino] = slices.Insert(t.described[ino], at, fdRef{pid: self, fd: fd, id: id})
	return id, nil
}

// inFlight is a descriptor in flight, installed in cryo as fd, whose
// entry id is a placeholder until a process of the checkpoint is found
// holding it.
type inFlight struct {
	fd   int
	ino  inode
	id   uint32
	link string
	in   string // the socket in whose queue it is
	// pid and view are those of the process that holds that socket.
	pid, view int
}

// resolveInFlight replaces each placeholder entry of a descriptor in
// flight by a reference to the entry of the process that holds it, and
// closes cryo's descriptors in flight.
func (t *Table) resolveInFlight() error {
	u := &t.unixTable
	defer func() {
		for _, fd := range u.inFlight {
			unix.Close(fd)
		}
		u.inFlight = nil
	}()
	var epolls []inFlight // dumped here, by their resolved ids
	for _, f := range u.unresolved {
		id, _, err := t.sharedWith(os.Getpid(), f.fd, f.ino)
		if err != nil {
			return err
		}
		if id == 0 && (eventpollKind{}).claims(&desc{link: f.link}) {
			// All epolls share one inode: kcmp tells them apart.
			for _, e := range epolls {
				if same, err := kernel.SameFile(os.Getpid(), f.fd, os.Getpid(), e.fd); err != nil {
					return err
				} else if same {
					id = e.id
				}
			}
			if id == 0 {
				if id, err = t.dumpEpollInFlight(f); err != nil {
					return fmt.Errorf("%s: an epoll in flight (SCM_RIGHTS): %w", f.in, err)
				}
				epolls = append(epolls, inFlight{fd: f.fd, id: id})
			}
		}
		if id == 0 {
			return fmt.Errorf("%w: %s: a descriptor in flight (SCM_RIGHTS) of %s, which no process of the checkpoint holds (only pipes, unix sockets and epolls are kept then)", ErrUnsupported, f.in, f.link)
		}
		for _, p := range u.queues {
			for _, scm := range p.e.Scm {
				for i, r := range scm.Rights {
					if r == f.id {
						scm.Rights[i] = id
					}
				}
			}
		}
	}
	return nil
}

// dumpEpollInFlight records an epoll that only a socket's queue holds,
// installed in cryo by the peek: its registrations are found among the
// descriptors of the process that holds the socket, which a restore adds
// them through.
func (t *Table) dumpEpollInFlight(f inFlight) (uint32, error) {
	self := os.Getpid()
	d := &desc{fd: f.fd, link: f.link, path: proc.Path(self, "fd/"+strconv.Itoa(f.fd)), holder: self}
	var err error
	if d.info, err = proc.ReadFdinfo(self, f.fd); err != nil {
		return 0, err
	}
	pid, view := t.pid, t.view
	t.pid, t.view = f.pid, f.view
	defer func() { t.pid, t.view = pid, view }()
	return eventpollKind{}.dump(t, d)
}

// setPacketExtras records a datagram's sender address and credentials,
// in the fields of sk_packet_entry CRIU's .proto reserves for them.
func setPacketExtras(e *pb.SkPacketEntry, addr []byte, cred *unix.Ucred) {
	e.Addr, e.Ucred = addr, nil
	if cred != nil {
		e.Ucred = &pb.SkUcredEntry{Uid: cred.Uid, Gid: cred.Gid, Pid: uint32(cred.Pid)}
	}
}

// packetExtras reads what setPacketExtras recorded: nil for what is not
// there.
func packetExtras(e *pb.SkPacketEntry) (addr []byte, cred *unix.Ucred) {
	if u := e.GetUcred(); u != nil {
		cred = &unix.Ucred{Pid: int32(u.GetPid()), Uid: u.GetUid(), Gid: u.GetGid()}
	}
	return e.GetAddr(), cred
}

// finish checks, once every process is dumped, that each socket's peer
// and each connection a listening socket has not accepted is in the
// checkpoint; a client of such a connection gets the listening socket as
// its peer, as CRIU records it. With ExtUnixSk, a datagram socket's peer
// outside is recorded as an external entry.
func (t *Table) finishUnix() error {
	u := &t.unixTable
	if err := t.resolveInFlight(); err != nil {
		return err
	}
	if err := u.checkSenders(); err != nil {
		return err
	}
	// The pending connections' clients.
	pending := map[uint32]uint32{} // client -> listening socket
	for ino, s := range u.socks {
		if s.State != tcpListen {
			continue
		}
		for _, c := range s.Icons {
			pending[c] = ino
		}
	}
	for _, ino := range u.order {
		d := u.dumped[ino]
		s := u.socks[ino]
		if l, ok := pending[ino]; ok {
			if u.dumped[l] == nil {
				return fmt.Errorf("%w: %s is connected to %s outside the checkpoint (not accepted yet)", ErrUnsupported, d, sockName(u.socks[l].Name))
			}
			if s.Wqueue != 0 {
				return fmt.Errorf("%w: %s sent %d bytes on a connection not accepted yet", ErrUnsupported, d, s.Wqueue)
			}
			d.e.Peer = l
			continue
		}
		if s.State == tcpListen {
			for _, c := range s.Icons {
				if u.dumped[c] == nil {
					return fmt.Errorf("%w: %s has a connection not accepted yet from a socket outside the checkpoint (inode %d)", ErrUnsupported, d, c)
				}
			}
			continue
		}
		peer := d.e.GetPeer()
		if peer == 0 || u.dumped[peer] != nil {
			continue
		}
		ps := u.socks[peer]
		name := "an unnamed socket"
		if ps != nil && len(ps.Name) > 0 {
			name = sockName(ps.Name)
		}
		switch {
		case !u.ExtUnixSk:
			return fmt.Errorf("%w: %s is connected to %s (inode %d) outside the checkpoint (criu's --ext-unix-sk keeps a datagram socket's)", ErrUnsupported, d, name, peer)
		case s.Type != unix.SOCK_DGRAM || ps == nil || len(ps.Name) == 0:
			return fmt.Errorf("%w: %s is connected to %s (inode %d) outside the checkpoint: only a datagram socket connected to a bound one is kept", ErrUnsupported, d, name, peer)
		}
		id := t.nextID()
		e := &pb.UnixSkEntry{
			Id: id, Ino: peer, Type: uint32(ps.Type), State: uint32(ps.State),
			Flags: 0, Uflags: uskExtern, Backlog: 0, Peer: 0,
			Fown: &pb.FownEntry{}, Opts: &pb.SkOptsEntry{SoSndbuf: 0, SoRcvbuf: 0, SoSndTmoSec: 0,
				SoSndTmoUsec: 0, SoRcvTmoSec: 0, SoRcvTmoUsec: 0},
			Name: ps.Name,
		}
		u.dumped[peer] = &unixDumped{e: e, pid: d.pid, fd: -1}
		t.add(&pb.FileEntry{Type: pb.FdTypes_UNIXSK, Id: id, Entry: e})
	}
	return nil
}

// checkSenders refuses a datagram queued by a socket outside the
// checkpoint that is still bound to the name it came from: the restore
// could not send it from that name again. One whose abstract name nothing
// holds now (its socket closed since) is sent again from a socket of
// cryo's bound to it for the while.
func (u *unixTable) checkSenders() error {
	names := map[string]bool{}
	byID := map[uint32]*unixDumped{}
	for _, d := range u.dumped {
		names[string(d.e.GetName())] = true
		byID[d.e.GetId()] = d
	}
	live := map[string]bool{}
	for _, s := range u.socks {
		live[string(s.Name)] = true
	}
	for _, p := range u.queues {
		if byID[p.e.GetIdFor()] == nil {
			continue // queued to a UDP socket (udp.go)
		}
		addr, _ := packetExtras(p.e)
		switch {
		case addr == nil || names[string(addr)]:
		case addr[0] == 0 && !live[string(addr)]:
			// From an abstract name nothing is bound to now.
		case addr[0] == 0:
			return fmt.Errorf("%w: %s holds a datagram from %s, a socket outside the checkpoint, bound to that name still", ErrUnsupported, byID[p.e.GetIdFor()], sockName(addr))
		default:
			return fmt.Errorf("%w: %s holds a datagram from %s, outside the checkpoint", ErrUnsupported, byID[p.e.GetIdFor()], sockName(addr))
		}
	}
	return nil
}

func (u *unixTable) write(dir *image.Dir) error {
	// The datagrams queued to UDP sockets go there too (udp.go).
	if len(u.dumped) == 0 && len(u.queues) == 0 {
		return nil
	}
	return writeWithPayloads(dir, image.SkQueues, 0, len(u.queues), func(i int) (pb.Message, []byte) {
		return u.queues[i].e, u.queues[i].data
	})
}

// unixSet is a checkpoint's unix sockets, by inode, and the data queued
// to them, by their entries' ids.
type unixSet struct {
	unixByIno map[uint32]*pb.UnixSkEntry
	queued    map[uint32][]unixPacket
}

// loadUnix reads sk-queues.img, which must be there when the checkpoint
// has unix sockets; with UDP sockets only, it is there if datagrams were
// queued to them.
func (s *Set) loadUnix() error {
	s.unixByIno, s.queued = map[uint32]*pb.UnixSkEntry{}, map[uint32][]unixPacket{}
	udp := false
	for _, f := range s.Files {
		if f.GetUsk() != nil {
			s.unixByIno[f.GetUsk().GetIno()] = f.GetUsk()
		}
		udp = udp || f.GetIsk().GetProto() == unix.IPPROTO_UDP
	}
	if len(s.unixByIno) == 0 && !udp {
		return nil
	}
	r, err := s.dir.Open(image.SkQueues, 0)
	if errors.Is(err, fs.ErrNotExist) && len(s.unixByIno) == 0 {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return imageErr("%s is missing: the checkpoint has unix sockets, whose queued data it holds", image.SkQueues.FileName(0))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer r.Close()
	for {
		e := &pb.SkPacketEntry{}
		if err := r.Next(e); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		data, err := io.ReadAll(r.Payload())
		if err != nil {
			return fmt.Errorf("%w: packet for socket %d: %w", ErrImage, e.GetIdFor(), err)
		}
		for _, scm := range e.Scm {
			if scm.GetType() != unix.SCM_RIGHTS {
				return fmt.Errorf("%w: packet for socket %d carries a control message of type %d", ErrUnsupported, e.GetIdFor(), scm.GetType())
			}
			for _, id := range scm.Rights {
				if s.File(id) == nil {
					return imageErr("packet for socket %d carries file %d, which files.img lacks", e.GetIdFor(), id)
				}
			}
		}
		s.queued[e.GetIdFor()] = append(s.queued[e.GetIdFor()], unixPacket{e: e, data: data})
	}
}

func (unixKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetUsk()
	switch {
	case e == nil:
		return imageErr("file %d: UNIXSK without a unix socket entry", f.GetId())
	case e.GetUflags()&uskExtern != 0:
		return imageErr("file %d: a descriptor of an external unix socket entry", f.GetId())
	}
	switch e.GetType() {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return imageErr("file %d: unix socket of type %d", f.GetId(), e.GetType())
	}
	if p := e.GetPeer(); p != 0 && s.unixByIno[p] == nil {
		return imageErr("file %d: unix socket's peer %d has no entry", f.GetId(), p)
	}
	return nil
}
