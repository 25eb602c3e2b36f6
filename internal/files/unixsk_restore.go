package files

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// A restore makes the unix sockets in cryo, then gives each to its
// process (deliver.go). Whatever records who did it is done as the
// process, on a thread of cryo's with its credentials (asProcess):
// creating the socket (its owner), binding a path (the file's owner, and
// whether the process may create it), listen and connect (the peer
// credentials each side gets, SO_PEERCRED, and whether the process may
// connect to the path). What root alone may do is done as cryo: buffer
// sizes past the system's maximum, the data put back in the queues with
// the credentials the dump read.
//
// The sockets connected to each other are made together: a pair by
// socketpair (bound afterwards if it was named); a listening socket with
// every connection it accepted (connected then accepted again, so that
// the accepted socket has the listening one's name) and those it has not
// accepted yet (connected, left pending); a datagram socket after the one
// it is connected to. cryo holds every socket it made until the restore
// ends, for the other processes of the tree and for the queues of others.

// unixShared is cryo's descriptors of the unix sockets made, by dumped
// inode.
type unixShared struct {
	unixMade map[uint32]int
	// unixHeld are cryo's descriptors of the files in flight made for
	// the queues, and of their pipes.
	unixHeld []int
	// cryoPipes are the pipes made in cryo for their ends in flight, by
	// pipe id.
	cryoPipes map[uint32]*cryoPipe
}

func (u *unixShared) closeUnix() {
	for _, fd := range u.unixMade {
		unix.Close(fd)
	}
	closeAll(u.unixHeld)
	u.unixMade, u.unixHeld, u.cryoPipes = nil, nil, nil
}

// SetCreds gives the credentials the process is restored with: the unix
// sockets are made with them. Without, they are made with cryo's.
func (r *Restorer) SetCreds(c kernel.Creds) { r.creds = &c }

func (unixKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	ino := f.GetUsk().GetIno()
	fd, ok := r.shared.unixMade[ino]
	if !ok {
		// What goes in flight with its queues may be an entry of the
		// process opened before: it is at its number once delivered.
		if err := r.deliver(true); err != nil {
			return -1, err
		}
		m := &unixMaking{r: r, byIno: r.set.unixByIno, tmp: map[uint32]int{}, released: map[uint32]bool{}, aside: map[string]string{}}
		if r.shared.unixMade == nil {
			r.shared.unixMade = map[uint32]int{}
		}
		err := m.make(ino)
		if err == nil {
			err = m.finish()
		}
		err = errors.Join(err, m.putBack())
		for _, t := range m.tmp {
			unix.Close(t)
		}
		for _, g := range m.gone {
			unix.Close(g)
		}
		if err != nil {
			return -1, fmt.Errorf("unix socket %s: %w", sockName(f.GetUsk().GetName()), err)
		}
		fd = r.shared.unixMade[ino]
	}
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

// unixMaking is the sockets made for one entry: it and those connected
// to it, made together.
type unixMaking struct {
	r     *Restorer
	byIno map[uint32]*pb.UnixSkEntry
	// unit are the sockets made, in order.
	unit []uint32
	// tmp are the other ends of sockets whose peer had closed: their
	// queues are sent from there, then they are closed.
	tmp map[uint32]int
	// gone are the sockets bound to the abstract names of datagrams'
	// senders closed since the dump, by name (goneSender).
	gone map[string]int
	// dirs are the directories made to bind names removed with them,
	// removed once the names are.
	dirs []string
	// released are the sockets whose removed name is removed already,
	// and their queues refilled.
	released map[uint32]bool
	// aside are the files found at a removed name, by its absolute path,
	// moved aside to their temporary path while a socket is bound there
	// (bindName), put back once the name is removed (putBack).
	aside map[string]string
}

func (m *unixMaking) fd(ino uint32) int { return m.r.shared.unixMade[ino] }

// made records socket fd as the one of entry ino.
func (m *unixMaking) made(ino uint32, fd int) {
	m.r.shared.unixMade[ino] = fd
	m.unit = append(m.unit, ino)
}

func (m *unixMaking) make(ino uint32) error {
	if _, ok := m.r.shared.unixMade[ino]; ok {
		return nil
	}
	e := m.byIno[ino]
	if e == nil {
		return imageErr("no unix socket of inode %d", ino)
	}
	if e.GetUflags()&uskExtern != 0 {
		return imageErr("unix socket %d is outside the checkpoint", ino)
	}
	if e.GetState() == tcpListen {
		return m.listener(e)
	}
	p := m.byIno[e.GetPeer()]
	switch {
	case p == nil:
		// Connected, its peer closed since: a connection a listener
		// of the checkpoint accepted is made with it, which binds the
		// name they share; but a bound datagram socket others
		// connected to is "established" too.
		if l := m.listenerOf(e); l != nil {
			return m.listener(l)
		}
		if e.GetState() == tcpEstablished && (e.GetType() != unix.SOCK_DGRAM || len(e.GetName()) == 0) {
			return m.pair(e, nil)
		}
		return m.single(e, nil)
	case p.GetState() == tcpListen: // a connection not accepted yet
		return m.listener(p)
	case p.GetUflags()&uskExtern != 0 || p == e: // connected to itself too
		return m.single(e, p)
	case e.GetType() != unix.SOCK_DGRAM:
		for _, side := range []*pb.UnixSkEntry{e, p} {
			if l := m.listenerOf(side); l != nil {
				return m.listener(l)
			}
		}
		return m.pair(e, p)
	case p.GetPeer() == ino:
		return m.pair(e, p)
	}
	if err := m.make(p.GetIno()); err != nil {
		return err
	}
	if _, ok := m.r.shared.unixMade[ino]; ok {
		return nil // made as one connected to p
	}
	return m.single(e, p)
}

// listenerOf returns the listening socket that accepted the connection of
// socket e, which has its name; nil if none is in the checkpoint.
func (m *unixMaking) listenerOf(e *pb.UnixSkEntry) *pb.UnixSkEntry {
	if len(e.GetName()) == 0 {
		return nil
	}
	for _, l := range m.byIno {
		if l.GetState() == tcpListen && l.GetType() == e.GetType() && bytes.Equal(l.GetName(), e.GetName()) && l.GetUflags()&uskExtern == 0 {
			return l
		}
	}
	return nil
}

// bound makes socket e, bound to its name if it had one.
func (m *unixMaking) bound(e *pb.UnixSkEntry) (int, error) {
	fd, err := newUnixSocket(e)
	if err != nil {
		return 0, err
	}
	m.made(e.GetIno(), fd)
	return fd, m.bindName(fd, e)
}

// single makes a socket on its own: bound if it was, connected to peer
// if given (a bound datagram socket).
func (m *unixMaking) single(e, peer *pb.UnixSkEntry) error {
	return m.r.asProcess(func() error {
		fd, err := m.bound(e)
		if err != nil {
			return err
		}
		if peer != nil {
			if err := connectName(fd, peer); err != nil {
				return err
			}
		}
		return m.release(e)
	})
}

// pair makes e and its peer p by socketpair, each bound afterwards if it
// was named; without p, e's other end is kept apart, for its queue, and
// closed after.
func (m *unixMaking) pair(e, p *pb.UnixSkEntry) error {
	return m.r.asProcess(func() error {
		fds, err := unix.Socketpair(unix.AF_UNIX, int(e.GetType())|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socketpair: %w", err)
		}
		m.made(e.GetIno(), fds[0])
		if p == nil {
			m.tmp[e.GetIno()] = fds[1]
			if err := m.bindName(fds[0], e); err != nil {
				return err
			}
			return m.release(e)
		}
		m.made(p.GetIno(), fds[1])
		if err := m.bindName(fds[0], e); err != nil {
			return err
		}
		if err := m.release(e); err != nil {
			return err
		}
		if err := m.bindName(fds[1], p); err != nil {
			return err
		}
		return m.release(p)
	})
}

// listener makes listening socket l, then every connection it accepted
// (each connected to it and accepted at once), then those it had not
// accepted yet, connected in turn and left pending.
func (m *unixMaking) listener(l *pb.UnixSkEntry) error {
	if _, ok := m.r.shared.unixMade[l.GetIno()]; ok {
		// Its connections were made with it.
		return imageErr("a connection of listening unix socket %d not made with it", l.GetIno())
	}
	var accepted, pending []*pb.UnixSkEntry
	for _, ino := range slices.Sorted(maps.Keys(m.byIno)) {
		e := m.byIno[ino]
		switch {
		case e == l || e.GetUflags()&uskExtern != 0 || e.GetType() != l.GetType():
		case e.GetState() == tcpListen:
		case e.GetPeer() == l.GetIno():
			pending = append(pending, e)
		case bytes.Equal(e.GetName(), l.GetName()) && m.listenerOf(e) == l:
			accepted = append(accepted, e)
		}
	}
	return m.r.asProcess(func() error {
		fd, err := m.bound(l)
		if err != nil {
			return err
		}
		if err := unix.Listen(fd, int(l.GetBacklog())); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		for _, a := range accepted {
			c := m.byIno[a.GetPeer()]
			var cfd int
			if c == nil {
				// The client had closed: an end of ours, closed after.
				if cfd, err = newUnixSocket(a); err != nil {
					return err
				}
				m.tmp[a.GetIno()] = cfd
			} else {
				if _, ok := m.r.shared.unixMade[c.GetIno()]; ok {
					return imageErr("unix socket %d: its peer %d is connected twice", a.GetIno(), c.GetIno())
				}
				if cfd, err = m.bound(c); err != nil {
					return err
				}
			}
			if err := connectName(cfd, l); err != nil {
				return err
			}
			afd, _, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				return fmt.Errorf("accept the connection of %d: %w", a.GetIno(), err)
			}
			m.made(a.GetIno(), afd)
		}
		for _, c := range pending {
			cfd, err := m.bound(c)
			if err != nil {
				return err
			}
			if err := connectName(cfd, l); err != nil {
				return err
			}
		}
		return nil
	})
}

// finish puts back the data queued to each socket made (making the
// datagram senders still missing), then their options, shutdown state
// and status flags, and removes the names that had been removed.
func (m *unixMaking) finish() error {
	// The sockets connected to one made here, while its name is there.
	for i := 0; i < len(m.unit); i++ {
		for _, ino := range slices.Sorted(maps.Keys(m.byIno)) {
			if m.byIno[ino].GetPeer() == m.unit[i] && m.byIno[ino].GetUflags()&uskExtern == 0 {
				if err := m.make(ino); err != nil {
					return err
				}
			}
		}
	}
	// The buffers first, as large as they were for what was queued;
	// the other options after (SO_PASSCRED would bind a datagram
	// sender without a name to one).
	for _, ino := range m.unit {
		if err := RestoreSockBuffers(m.fd(ino), m.byIno[ino].GetOpts()); err != nil {
			return fmt.Errorf("unix socket %d: %w", ino, err)
		}
	}
	for i := 0; i < len(m.unit); i++ {
		if m.released[m.unit[i]] {
			continue
		}
		if err := m.fill(m.byIno[m.unit[i]]); err != nil {
			return fmt.Errorf("refill the queue of unix socket %d: %w", m.unit[i], err)
		}
	}
	for _, ino := range m.unit {
		e, fd := m.byIno[ino], m.fd(ino)
		if err := RestoreSockOpts(fd, e.GetOpts()); err != nil {
			return fmt.Errorf("unix socket %d: %w", ino, err)
		}
		if err := errors.Join(m.r.set.setPeekOff(fd, e.GetId()), m.r.set.setKeptOpts(fd, e.GetId())); err != nil {
			return fmt.Errorf("unix socket %d: %w", ino, err)
		}
		if sh := e.GetShutdown(); sh != 0 {
			if err := unix.Shutdown(fd, int(sh)-1); err != nil && !errors.Is(err, unix.ENOTCONN) {
				return fmt.Errorf("shut unix socket %d down: %w", ino, err)
			}
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, int(e.GetFlags())); err != nil {
			return fmt.Errorf("set flags of unix socket %d: %w", ino, err)
		}
	}
	return m.r.asProcess(func() error {
		removed := map[string]bool{} // an accepted socket has its listening one's name
		for _, ino := range m.unit {
			e := m.byIno[ino]
			if !e.GetDeleted() || len(e.GetName()) == 0 || e.GetName()[0] == 0 || m.released[ino] || removed[e.GetNameDir()+"\x00"+addrString(e)] {
				continue
			}
			removed[e.GetNameDir()+"\x00"+addrString(e)] = true
			if err := chdirName(e); err != nil {
				return err
			}
			if err := unix.Unlink(addrString(e)); err != nil {
				return fmt.Errorf("remove %s, removed at the dump: %w", sockName(e.GetName()), err)
			}
		}
		for _, d := range slices.Backward(m.dirs) {
			if err := unix.Rmdir(d); err != nil {
				return fmt.Errorf("remove the directory %s, removed at the dump: %w", d, err)
			}
		}
		return nil
	})
}

// fill sends the data queued to socket e back from where it came: its
// peer for a stream; for a datagram the socket of the checkpoint bound to
// the sender's address, else its peer or a socket of no name.
func (m *unixMaking) fill(e *pb.UnixSkEntry) error {
	packets := m.r.set.queued[e.GetId()]
	if len(packets) == 0 {
		return nil
	}
	for _, p := range packets {
		addr, cred := packetExtras(p.e)
		from, dest, err := m.sender(e, addr)
		if err != nil {
			return err
		}
		var rights []int
		for _, scm := range p.e.Scm {
			for _, id := range scm.Rights {
				fd, err := m.inFlight(id)
				if err != nil {
					closeAll(rights)
					return fmt.Errorf("file %d in flight: %w", id, err)
				}
				rights = append(rights, fd)
			}
		}
		err = m.send(from, dest, p.data, cred, rights)
		closeAll(rights)
		if err != nil {
			return err
		}
	}
	return nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// inFlight returns a descriptor of cryo's, for the caller to close, of
// file id, to put in flight again: the open file description a process
// of the tree (this one too) has open already, else a unix socket or an
// end of a pipe made here. Such a description made here is where the
// processes that hold it later take it from (Shared.opened).
func (m *unixMaking) inFlight(id uint32) (int, error) {
	r := m.r
	f := r.set.File(id)
	if f.GetUsk() != nil {
		if err := m.make(f.GetUsk().GetIno()); err != nil {
			return -1, err
		}
		return unix.FcntlInt(uintptr(m.fd(f.GetUsk().GetIno())), unix.F_DUPFD_CLOEXEC, 0)
	}
	if ref, ok := r.shared.opened[id]; ok {
		if ref.pid == os.Getpid() {
			return unix.FcntlInt(uintptr(ref.fd), unix.F_DUPFD_CLOEXEC, 0)
		}
		return kernel.Getfd(ref.pid, ref.fd)
	}
	for _, fd := range r.set.Fds {
		if fd.GetId() == id && r.placed.has(uint64(fd.GetFd())) {
			return r.getfd(uint64(fd.GetFd()))
		}
	}
	if f.GetEpfd() != nil {
		return m.epollInFlight(f)
	}
	if f.GetPipe() == nil {
		return -1, fmt.Errorf("%w: a %v in flight (SCM_RIGHTS) that no process of the tree has open before", ErrUnsupported, f.GetType())
	}
	fd, err := m.pipeEnd(f)
	if err != nil {
		return -1, err
	}
	kept, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	r.shared.unixHeld = append(r.shared.unixHeld, kept)
	r.shared.opened[id] = fdRef{pid: os.Getpid(), fd: kept, id: id}
	return fd, nil
}

// epollInFlight makes in cryo an epoll that no process holds, only a
// queue, with its registrations, added through cryo's own descriptors of
// the files the process watches: the registrations come back keyed by
// those numbers (the images have no room for the original ones, as for
// any epoll). It is where a second reference in flight takes it from.
func (m *unixMaking) epollInFlight(f *pb.FileEntry) (int, error) {
	r := m.r
	ep, err := eventpollKind{}.open(r, f)
	if err != nil {
		return -1, err
	}
	err = func() error {
		for _, tg := range f.GetEpfd().GetTfd() {
			i := slices.IndexFunc(r.set.Fds, func(fd pb.FdinfoEntry) bool { return fd.GetFd() == tg.GetTfd() })
			if i < 0 {
				return imageErr("epoll file %d watches fd %d, which the process does not have", f.GetId(), tg.GetTfd())
			}
			tfd, err := m.inFlight(r.set.Fds[i].GetId())
			if err != nil {
				return fmt.Errorf("watched fd %d: %w", tg.GetTfd(), err)
			}
			ev := unix.EpollEvent{Events: tg.GetEvents(), Fd: int32(tg.GetData()), Pad: int32(tg.GetData() >> 32)}
			err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, tfd, &ev)
			unix.Close(tfd)
			if err != nil {
				return fmt.Errorf("add fd %d (events %#x): %w", tg.GetTfd(), tg.GetEvents(), err)
			}
		}
		kept, err := unix.FcntlInt(uintptr(ep), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		r.shared.unixHeld = append(r.shared.unixHeld, kept)
		r.shared.opened[f.GetId()] = fdRef{pid: os.Getpid(), fd: kept, id: f.GetId()}
		return nil
	}()
	if err != nil {
		unix.Close(ep)
		return -1, fmt.Errorf("epoll %d in flight: %w", f.GetId(), err)
	}
	return ep, nil
}

// pipeEnd returns a new descriptor of cryo's of pipe entry f: opened
// where a process of the tree (this one too) has the pipe, else from a
// pipe made in cryo and filled with its data, which the processes that
// have it later get their ends of (Shared.cryoPipes).
func (m *unixMaking) pipeEnd(f *pb.FileEntry) (int, error) {
	r, id := m.r, f.GetPipe().GetPipeId()
	if p, ok := r.shared.cryoPipes[id]; ok {
		return p.take(f.GetPipe().GetFlags())
	}
	path := ""
	if ref, ok := r.shared.pipes[id]; ok {
		path = "/proc/" + strconv.Itoa(ref.pid) + "/fd/" + strconv.Itoa(ref.fd)
	}
	for _, fd := range r.set.Fds {
		if p := r.set.File(fd.GetId()).GetPipe(); p != nil && p.GetPipeId() == id && r.placed.has(uint64(fd.GetFd())) {
			path = "/proc/" + strconv.Itoa(r.pid) + "/fd/" + strconv.Itoa(int(fd.GetFd()))
		}
	}
	if path != "" {
		return openCryoPipe(path, f.GetPipe().GetFlags())
	}
	var ends [2]int
	if err := unix.Pipe2(ends[:], unix.O_CLOEXEC); err != nil {
		return -1, fmt.Errorf("make pipe %d: %w", id, err)
	}
	r.shared.unixHeld = append(r.shared.unixHeld, ends[0], ends[1])
	d := r.set.pipes[id]
	if err := fillPipeFd(ends[1], int(d.e.GetSize()), d.data); err != nil {
		return -1, fmt.Errorf("pipe %d: %w", id, err)
	}
	p := &cryoPipe{ends: ends}
	if r.shared.cryoPipes == nil {
		r.shared.cryoPipes = map[uint32]*cryoPipe{}
	}
	r.shared.cryoPipes[id] = p
	return p.take(f.GetPipe().GetFlags())
}

// cryoPipe is a pipe made in cryo for one of its ends in flight: the
// ends pipe() made, and whether an entry was given each.
type cryoPipe struct {
	ends  [2]int
	given [2]bool
}

// take returns a new descriptor of cryo's of an end of the pipe with
// status flags: the end pipe() made if the flags say an entry had it (as
// pipeKind.open tells), else the end opened again.
func (p *cryoPipe) take(flags uint32) (int, error) {
	end := 0
	if flags&unix.O_ACCMODE == unix.O_WRONLY {
		end = 1
	}
	if flags&kernel.OLargefile == 0 && flags&unix.O_ACCMODE != unix.O_RDWR && !p.given[end] {
		p.given[end] = true
		fd, err := unix.FcntlInt(uintptr(p.ends[end]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, int(flags)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set pipe flags %#o: %w", flags, err)
		}
		return fd, nil
	}
	return openCryoPipe("/proc/self/fd/"+strconv.Itoa(p.ends[end]), flags)
}

// openCryoPipe opens a pipe in cryo through path with status flags, as
// openPipe does in a process.
func openCryoPipe(path string, flags uint32) (int, error) {
	fd, err := unix.Open(path, int(flags&unix.O_ACCMODE)|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, int(flags)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set flags %#o of %s: %w", flags, path, err)
	}
	return fd, nil
}

// sender returns the socket a packet to e from addr is sent from, and
// the address to send it to (nil: the sender's peer, e).
func (m *unixMaking) sender(e *pb.UnixSkEntry, addr []byte) (int, *unix.SockaddrUnix, error) {
	if t, ok := m.tmp[e.GetIno()]; ok {
		return t, nil, nil // its peer had closed
	}
	if e.GetType() != unix.SOCK_DGRAM {
		if fd, ok := m.r.shared.unixMade[e.GetPeer()]; ok {
			return fd, nil, nil
		}
		return -1, nil, imageErr("data queued to unix socket %d without a peer", e.GetIno())
	}
	from := -1
	var fromEntry *pb.UnixSkEntry
	if addr != nil {
		for _, s := range m.byIno {
			if bytes.Equal(s.GetName(), addr) && s.GetUflags()&uskExtern == 0 && s.GetState() != tcpListen {
				fromEntry = s
				break
			}
		}
		switch {
		case fromEntry != nil:
			if err := m.make(fromEntry.GetIno()); err != nil {
				return -1, nil, err
			}
			from = m.fd(fromEntry.GetIno())
		case addr[0] == 0:
			// A socket closed since the datagram was sent (checkSenders):
			// one of cryo's bound to its abstract name sends it, and is
			// closed with the other temporary ones.
			var err error
			if from, err = m.goneSender(addr); err != nil {
				return -1, nil, err
			}
		default:
			return -1, nil, imageErr("a datagram from %s, which is not in the checkpoint", sockName(addr))
		}
	} else if c := m.unnamedClient(e); c != nil {
		if err := m.make(c.GetIno()); err != nil {
			return -1, nil, err
		}
		fromEntry, from = c, m.fd(c.GetIno())
	} else if fd, ok := m.tmp[^e.GetIno()]; ok {
		from = fd
	} else {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, nil, err
		}
		// A socket of no name, closed with the other ends kept apart
		// (under a key no inode of theirs is).
		m.tmp[^e.GetIno()] = fd
		from = fd
	}
	if fromEntry != nil && fromEntry.GetPeer() == e.GetIno() {
		return from, nil, nil
	}
	if len(e.GetName()) == 0 {
		return -1, nil, fmt.Errorf("%w: a datagram queued to an unnamed socket by one not connected to it", ErrUnsupported)
	}
	dest, err := sendName(e)
	if err != nil {
		return -1, nil, err
	}
	return from, &unix.SockaddrUnix{Name: dest}, nil
}

// goneSender returns a datagram socket of cryo's bound to the abstract
// name addr, which no socket holds (the sender of a datagram queued at the
// dump closed since), made once per name.
func (m *unixMaking) goneSender(addr []byte) (int, error) {
	if fd, ok := m.gone[string(addr)]; ok {
		return fd, nil
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + string(addr[1:])}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind to %s, the name of a datagram's sender closed since the dump: %w", sockName(addr), err)
	}
	if m.gone == nil {
		m.gone = map[string]int{}
	}
	m.gone[string(addr)] = fd
	return fd, nil
}

// sendName is the name cryo's threads send to socket e by: a relative
// name joined to the directory it is in (the thread that sends is not
// there), which must still fit in a socket address.
func sendName(e *pb.UnixSkEntry) (string, error) {
	name := addrString(e)
	if e.GetName()[0] == 0 || filepath.IsAbs(name) || e.GetNameDir() == "" {
		return name, nil
	}
	abs := filepath.Join(e.GetNameDir(), name)
	if len(abs) >= len(unix.RawSockaddrUnix{}.Path) {
		return "", fmt.Errorf("%w: a datagram queued to unix socket %s in %s by a socket that is gone: its name from there is %d bytes, more than an address holds", ErrUnsupported, name, e.GetNameDir(), len(abs))
	}
	return abs, nil
}

// unnamedClient returns a socket of no name that can send to e without
// naming it, or e's peer of no name: any sends as the unnamed sender of a
// datagram did. Nil if none.
func (m *unixMaking) unnamedClient(e *pb.UnixSkEntry) *pb.UnixSkEntry {
	for _, ino := range slices.Sorted(maps.Keys(m.byIno)) {
		c := m.byIno[ino]
		if c.GetPeer() == e.GetIno() && len(c.GetName()) == 0 && c.GetType() == unix.SOCK_DGRAM && c.GetUflags()&uskExtern == 0 {
			return c
		}
	}
	if p := m.byIno[e.GetPeer()]; p != nil && len(p.GetName()) == 0 && p.GetUflags()&uskExtern == 0 {
		return p
	}
	return nil
}

// send sends data from socket fd to dest (its peer if nil) with the
// credentials cred (the dump's, else the process's own): cryo's would be
// root's.
func (m *unixMaking) send(fd int, dest *unix.SockaddrUnix, data []byte, cred *unix.Ucred, rights []int) error {
	if cred == nil {
		cred = &unix.Ucred{Pid: int32(m.r.pid), Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid())}
		if c := m.r.creds; c != nil {
			cred.Uid, cred.Gid = c.EUID, c.EGID
		}
	}
	var to unix.Sockaddr
	if dest != nil {
		to = dest
	}
	for {
		oob := unix.UnixCredentials(cred)
		if len(rights) > 0 {
			oob = append(oob, unix.UnixRights(rights...)...)
		}
		n, err := unix.SendmsgN(fd, data, oob, to, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if errors.Is(err, unix.ESRCH) && cred.Pid != int32(m.r.pid) {
			// The sender has exited: the credentials stay, with the
			// pid of the receiving process.
			c := *cred
			c.Pid = int32(m.r.pid)
			cred = &c
			continue
		}
		if err != nil {
			return fmt.Errorf("send %d bytes: %w", len(data), err)
		}
		data, rights = data[n:], nil // the descriptors went with the first bytes
		if len(data) == 0 {
			return nil
		}
	}
}

// asProcess runs f on a thread of cryo's own, with the process's
// credentials and a working directory of its own, which dies after.
func (r *Restorer) asProcess(f func() error) error { return onThreadAs(r.creds, f) }

// onThreadAs runs f on a thread of cryo's own, with a working directory
// of its own, and with credentials c unless nil.
func onThreadAs(c *kernel.Creds, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare the working directory: %w", err)
			}
			if c != nil {
				if err := kernel.BecomeThread(*c); err != nil {
					return fmt.Errorf("take the credentials %d/%d: %w", c.UID, c.EUID, err)
				}
			}
			return f()
		}()
	}()
	return <-errc
}

// newUnixSocket makes a socket of e's type, non-blocking until its flags
// are set.
func newUnixSocket(e *pb.UnixSkEntry) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, int(e.GetType())|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("make a unix socket: %w", err)
	}
	return fd, nil
}

// addrString is e's name as x/sys spells an address: "@" for the zero
// byte of an abstract name, a path without its terminating zero.
func addrString(e *pb.UnixSkEntry) string {
	name := e.GetName()
	if len(name) > 0 && name[0] == 0 {
		return "@" + string(name[1:])
	}
	return string(bytes.TrimRight(name, "\x00"))
}

// chdirName moves the calling thread (asProcess's) to the directory a
// relative name of e is in.
func chdirName(e *pb.UnixSkEntry) error {
	if dir := e.GetNameDir(); dir != "" {
		if err := unix.Chdir(dir); err != nil {
			return fmt.Errorf("chdir %s, where %s is: %w", dir, sockName(e.GetName()), err)
		}
	}
	return nil
}

// bindName binds socket fd to e's name, if it had one, on the thread of
// asProcess. A path is bound only where nothing is, or a socket file no
// socket is bound at (left by a process that exited, whose restore this
// may be); the file gets its owner and mode back. A name removed since
// the dump is bound whatever is there now, which steps aside until the
// name is removed again (moveAside, putBack). A path removed since
// the dump, in a directory removed too, is bound in directories made
// for the time of the restore (m.dirs), removed after.
func (m *unixMaking) bindName(fd int, e *pb.UnixSkEntry) error {
	name := e.GetName()
	if len(name) == 0 {
		return nil
	}
	if name[0] != 0 {
		if err := chdirName(e); err != nil {
			return err
		}
		path := addrString(e)
		if e.GetDeleted() {
			if err := m.makeDirs(filepath.Dir(path)); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err == nil {
			switch {
			case e.GetDeleted():
				// The name was removed and another file made there
				// (another socket bound there since, a FIFO): it
				// steps aside while the name is this socket's.
				if err := m.moveAside(e, path); err != nil {
					return err
				}
			case st.Mode&unix.S_IFMT == unix.S_IFSOCK && staleSocketFile(path):
				if err := unix.Unlink(path); err != nil {
					return fmt.Errorf("remove the unused socket file %s: %w", path, err)
				}
			default:
				return fmt.Errorf("%w: %s exists (mode %#o) and is not a socket file left unused", ErrChanged, path, st.Mode)
			}
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addrString(e)}); err != nil {
		return fmt.Errorf("bind %s: %w", sockName(name), err)
	}
	if perms := e.GetFilePerms(); perms != nil && name[0] != 0 && !e.GetDeleted() {
		path := addrString(e)
		if err := unix.Fchmodat(unix.AT_FDCWD, path, perms.GetMode()&07777, 0); err != nil {
			return fmt.Errorf("chmod %s %#o: %w", path, perms.GetMode()&07777, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Uid != perms.GetUid() || st.Gid != perms.GetGid() {
			if err := unix.Lchown(path, int(perms.GetUid()), int(perms.GetGid())); err != nil {
				return fmt.Errorf("chown %s %d:%d: %w", path, perms.GetUid(), perms.GetGid(), err)
			}
		}
	}
	return nil
}

// moveAside renames the file at path, the removed name of socket e
// (relative to its directory, the thread's), to a name of its own beside
// it, on the thread of asProcess.
func (m *unixMaking) moveAside(e *pb.UnixSkEntry, path string) error {
	abs := path
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(e.GetNameDir(), path)
	}
	base := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".cryo-aside")
	tmp := base
	for i := 1; ; i++ {
		err := unix.Renameat2(unix.AT_FDCWD, abs, unix.AT_FDCWD, tmp, unix.RENAME_NOREPLACE)
		if err == nil {
			m.aside[abs] = tmp
			return nil
		}
		if !errors.Is(err, unix.EEXIST) || i == 100 {
			return fmt.Errorf("move %s, where unix socket %d was bound, aside to %s: %w", abs, e.GetIno(), tmp, err)
		}
		tmp = base + "." + strconv.Itoa(i)
	}
}

// putBack puts back the files moved aside, once their names, removed
// names of the sockets made, are removed again (or, if the making
// failed, removing them now).
func (m *unixMaking) putBack() error {
	if len(m.aside) == 0 {
		return nil
	}
	return m.r.asProcess(func() error {
		var errs []error
		for abs, tmp := range m.aside {
			// Only the socket file of the removed name can be there.
			var st unix.Stat_t
			if err := unix.Lstat(abs, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
				if err := unix.Unlink(abs); err != nil {
					errs = append(errs, fmt.Errorf("remove %s to put the file there back: %w", abs, err))
					continue
				}
			}
			if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, abs, unix.RENAME_NOREPLACE); err != nil {
				errs = append(errs, fmt.Errorf("put %s back at %s: %w", tmp, abs, err))
			}
		}
		m.aside = map[string]string{}
		return errors.Join(errs...)
	})
}

// release removes the name of datagram socket e, bound to a path removed
// since (another may be bound there next), once the sockets connected to
// it are: on the thread of asProcess.
func (m *unixMaking) release(e *pb.UnixSkEntry) error {
	name := e.GetName()
	if !e.GetDeleted() || len(name) == 0 || name[0] == 0 || e.GetType() != unix.SOCK_DGRAM {
		return nil
	}
	for _, ino := range slices.Sorted(maps.Keys(m.byIno)) {
		c := m.byIno[ino]
		if c.GetPeer() == e.GetIno() && c != e && c.GetUflags()&uskExtern == 0 {
			if err := m.make(ino); err != nil {
				return err
			}
		}
	}
	// Its queue too, while its name reaches it: from a thread of cryo's
	// (this one, the process's, cannot give credentials).
	done := make(chan error, 1)
	go func() { done <- m.fill(e) }()
	if err := <-done; err != nil {
		return fmt.Errorf("refill the queue of unix socket %d: %w", e.GetIno(), err)
	}
	if err := chdirName(e); err != nil {
		return err
	}
	if err := unix.Unlink(addrString(e)); err != nil {
		return fmt.Errorf("remove %s, removed at the dump: %w", sockName(name), err)
	}
	m.released[e.GetIno()] = true
	return nil
}

// makeDirs makes the directories of path dir that are missing, as the
// process, and records them to be removed after.
func (m *unixMaking) makeDirs(dir string) error {
	var st unix.Stat_t
	if dir == "/" || dir == "." || unix.Lstat(dir, &st) == nil {
		return nil
	}
	if err := m.makeDirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := unix.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("make the removed directory %s for the time of the restore: %w", dir, err)
	}
	abs := dir
	if !filepath.IsAbs(dir) {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		abs = filepath.Join(wd, dir)
	}
	m.dirs = append(m.dirs, abs)
	return nil
}

// staleSocketFile reports whether no socket is bound at the socket file
// path: connecting to it is refused. The probe is a datagram socket: a
// stream or seqpacket one bound there refuses its type (EPROTOTYPE), a
// datagram one takes it, and neither is changed, where a stream probe
// would leave a listener a connection to accept.
func staleSocketFile(path string) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return errors.Is(unix.Connect(fd, &unix.SockaddrUnix{Name: path}), unix.ECONNREFUSED)
}

// connectName connects socket fd to the name of socket peer, on the
// thread of asProcess.
func connectName(fd int, peer *pb.UnixSkEntry) error {
	if len(peer.GetName()) == 0 {
		return fmt.Errorf("%w: connect to an unnamed socket (inode %d)", ErrUnsupported, peer.GetIno())
	}
	if err := chdirName(peer); err != nil {
		return err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: addrString(peer)}); err != nil {
		return fmt.Errorf("connect to %s: %w", sockName(peer.GetName()), err)
	}
	return nil
}
