package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// ttyKind is a terminal. Two kinds come back: a pseudo-terminal whose
// both ends the process holds (the master, opened from /dev/ptmx, and its
// slave /dev/pts/N), made anew with its settings, window size, lock,
// packet mode and queued data; and, for a shell job, a terminal whose
// other end is elsewhere (the shell's), which becomes the terminal cryo
// restores from, given the dumped settings, window size and foreground
// group. /dev/tty, the controlling terminal, is opened again once that is
// in place. Each entry refers to a tty-info.img entry per terminal side
// (CRIU's meaning) and to a REG entry holding the path.
type ttyKind struct{}

func (ttyKind) typ() pb.FdTypes { return pb.FdTypes_TTY }

func (ttyKind) claims(d *desc) bool {
	if !strings.HasPrefix(d.link, "/") || d.mode() != unix.S_IFCHR {
		return false
	}
	_, ok := ttyTypeOf(d.st.Rdev)
	return ok
}

// ttyTypeOf tells the type of terminal a character device is, by its
// numbers (Documentation/admin-guide/devices.txt).
func ttyTypeOf(rdev uint64) (pb.TtyType, bool) {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	switch {
	case major == 5 && minor == 0:
		return pb.TtyType_CTTY, true
	case major == 5 && minor == 1:
		return pb.TtyType_CONSOLE, true
	case major == 5 && minor == 2, major >= 136 && major <= 143:
		return pb.TtyType_PTY, true
	case major == 4 && minor < 64:
		return pb.TtyType_VT, true
	case major == 4:
		return pb.TtyType_SERIAL, true
	}
	return pb.TtyType_UNKNOWN, false
}

// isPtmx reports whether a character device is the pseudo-terminal
// multiplexer, whose every open makes a master.
func isPtmx(rdev uint64) bool { return unix.Major(rdev) == 5 && unix.Minor(rdev) == 2 }

// slaveIndex is the number of a pseudo-terminal slave: /dev/pts/N.
func slaveIndex(rdev uint64) uint32 {
	return (unix.Major(rdev)-136)<<8 + unix.Minor(rdev)
}

// ptyKey names a pseudo-terminal: its devpts instance and index.
type ptyKey struct {
	dev   uint64
	index uint32
}

// ptyEnds are a descriptor of each end of a pseudo-terminal that the
// dumped process holds (-1 where it holds none); slavePid, if not 0, is
// the later process of the tree whose descriptor slave is.
type ptyEnds struct{ master, slave, slavePid int }

// ttyTable is the terminals of the processes being dumped. A
// pseudo-terminal is made by the process that holds its master: the
// restore makes it there, and the other processes of the tree, restored
// after it, can share its ends' open file descriptions or open its slave
// anew.
type ttyTable struct {
	root     int // the root of the tree dumped
	ttyInfos []*pb.TtyInfoEntry
	ttyData  []*pb.TtyDataEntry
	// ptyInfos are the tty-info ids (slave, master) of the
	// pseudo-terminals dumped, and externalPtys the slaves taken for a
	// shell job's terminal, so that no pseudo-terminal is both.
	ptyInfos     map[ptyKey][2]uint32
	ptyOwners    map[ptyKey]int
	externalPtys map[ptyKey]bool
	// ptys are the pseudo-terminal ends of the process being dumped,
	// found on first need, and stat its stat: both for one process.
	ptys map[ptyKey]*ptyEnds
	// external are the tty-info ids of the terminals outside the
	// checkpoint (a shell job's), by device.
	external map[uint64]uint32
	// hungUp are the tty-info ids of the slaves hung up when their
	// master closed.
	hungUp map[ptyKey]uint32
	stat   *proc.Stat
}

// process starts the terminals of another process.
func (t *ttyTable) process() { t.ptys, t.stat = nil, nil }

func (t *ttyTable) addInfo(e *pb.TtyInfoEntry) uint32 {
	e.Id = uint32(len(t.ttyInfos) + 1)
	t.ttyInfos = append(t.ttyInfos, e)
	return e.GetId()
}

func (t *ttyTable) write(dir *image.Dir) error {
	if err := image.WriteSome(dir, image.TTYInfo, 0, t.ttyInfos); err != nil {
		return err
	}
	return image.WriteSome(dir, image.TTYData, 0, t.ttyData)
}

func (ttyKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	var info uint32
	var err error
	if deleted {
		info, err = t.hungUpInfo(d, path)
	} else {
		info, err = t.ttyInfo(d, path)
	}
	if err != nil {
		return 0, err
	}
	regID := t.nextID()
	t.add(&pb.FileEntry{Type: pb.FdTypes_REG, Id: regID, Entry: regEntry(regID, path, d)})
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_TTY, Id: id,
		Entry: &pb.TtyFileEntry{
			Id: id, TtyInfoId: info, Flags: statusFlags(d.info),
			Fown: &pb.FownEntry{}, RegfId: pb.Uint32(regID),
		},
	}), nil
}

// procStat is the dumped process's stat, read once.
func (t *Table) procStat() (*proc.Stat, error) {
	if t.stat == nil {
		st, err := proc.ReadStat(t.pid)
		if err != nil {
			return nil, err
		}
		t.stat = &st
	}
	return t.stat, nil
}

// ttyInfo returns the tty-info id of the terminal behind d, recording it
// the first time, or refuses a terminal the checkpoint cannot hold.
func (t *Table) ttyInfo(d *desc, path string) (uint32, error) {
	typ, _ := ttyTypeOf(d.st.Rdev)
	if typ == pb.TtyType_CTTY {
		return t.cttyInfo(d)
	}
	if typ == pb.TtyType_PTY {
		key, ends, err := t.ptyOf(d)
		if err != nil {
			return 0, fmt.Errorf("fd %d (%s): %w", d.fd, path, err)
		}
		master := isPtmx(d.st.Rdev)
		infos, dumped := t.ptyInfos[key]
		switch {
		case dumped && t.ptyOwners[key] != t.pid && !master:
			// A slave opened apart from the process that holds the
			// master (a terminal multiplexer's shell), dumped before it.
			return infos[0], nil
		case dumped && t.ptyOwners[key] != t.pid:
			return 0, fmt.Errorf("%w: fd %d is the master of pseudo-terminal %d, which another process of the tree holds: opened apart from it, not inherited",
				ErrUnsupported, d.fd, key.index)
		case ends != nil:
			if !dumped {
				if err := t.dumpPty(key, ends); err != nil {
					return 0, fmt.Errorf("pseudo-terminal %d: %w", key.index, err)
				}
				infos = t.ptyInfos[key]
			}
			if master {
				return infos[1], nil
			}
			return infos[0], nil
		case master:
			return 0, fmt.Errorf("%w: fd %d is the master of pseudo-terminal %d, whose slave the process does not hold: its other end is outside the checkpoint",
				ErrUnsupported, d.fd, key.index)
		}
	}
	if !t.shellJob {
		return 0, fmt.Errorf("%w: fd %d is the terminal %s, whose other end is outside the checkpoint: dump with --shell-job", ErrUnsupported, d.fd, path)
	}
	return t.externalInfo(d, typ)
}

// checkControllingTerminal refuses, but for a shell job, a process that
// leads its session and whose controlling terminal is outside the
// checkpoint: a restore could not give it back. The other processes of
// a session get its terminal from their parent, born after the leader
// took it.
func (t *Table) checkControllingTerminal() error {
	stat, err := t.procStat()
	if err != nil || stat.TtyNr == 0 || stat.Session != t.pid {
		return err
	}
	if t.shellJob {
		return nil
	}
	if t.ptys == nil {
		if err := t.scanPtys(); err != nil {
			return err
		}
	}
	for _, ends := range t.ptys {
		if ends.master < 0 {
			continue
		}
		if sid, err := t.slaveSession(ends.master); err != nil || sid == t.pid {
			return err
		}
	}
	for _, infos := range t.ptyInfos {
		if int(t.ttyInfos[infos[0]-1].GetSid()) == t.pid {
			return nil // dumped with another process's master
		}
	}
	dev := uint64(stat.TtyNr)
	return fmt.Errorf("%w: the process leads its session, whose controlling terminal (device %d:%d) is outside the checkpoint: dump with --shell-job",
		ErrUnsupported, unix.Major(dev), unix.Minor(dev))
}

// hungUpInfo records a slave whose master was closed, which hung it up
// and removed its node: a restore makes a pseudo-terminal, opens the
// slave and closes the master, which hangs it up again. Its tty-info
// entry has no settings: a hung-up terminal has none to give.
func (t *Table) hungUpInfo(d *desc, path string) (uint32, error) {
	refuse := fmt.Errorf("%w: fd %d is the deleted terminal %s", ErrUnsupported, d.fd, path)
	if typ, _ := ttyTypeOf(d.st.Rdev); typ != pb.TtyType_PTY || isPtmx(d.st.Rdev) {
		return 0, refuse
	}
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	// A hung-up file answers every terminal ioctl with EIO.
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); !errors.Is(err, unix.EIO) {
		return 0, refuse
	}
	key := ptyKey{d.st.Dev, slaveIndex(d.st.Rdev)}
	if id, ok := t.hungUp[key]; ok {
		return id, nil
	}
	if t.hungUp == nil {
		t.hungUp = map[ptyKey]uint32{}
	}
	t.hungUp[key] = t.addInfo(&pb.TtyInfoEntry{
		Type: pb.TtyType_PTY, Locked: false, Exclusive: false, PacketMode: false,
		Sid: 0, Pgrp: 0, Rdev: uint32(d.st.Rdev),
		Pty: &pb.TtyPtyEntry{Index: key.index}, Uid: pb.Uint32(d.st.Uid), Gid: pb.Uint32(d.st.Gid),
	})
	return t.hungUp[key], nil
}

// ptyOf finds the pseudo-terminal of descriptor d and, if the process
// holds both its ends, the descriptors of each.
func (t *Table) ptyOf(d *desc) (ptyKey, *ptyEnds, error) {
	if t.ptys == nil {
		if err := t.scanPtys(); err != nil {
			return ptyKey{}, nil, err
		}
	}
	key, err := t.ptyKeyOf(d.fd, d.link, &d.st, d.info)
	if err != nil {
		return ptyKey{}, nil, err
	}
	ends := t.ptys[key]
	if ends == nil || ends.master < 0 {
		return key, nil, nil
	}
	if ends.slave < 0 {
		// The slave may be held by a process of the tree restored after
		// this one, or as the controlling terminal of a session of the
		// tree alone.
		pid, fd, err := t.laterSlave(key)
		if err != nil {
			return ptyKey{}, nil, err
		}
		if pid != 0 {
			return key, &ptyEnds{master: ends.master, slave: fd, slavePid: pid}, nil
		}
		if sid, err := t.slaveSession(ends.master); err != nil || sid == 0 || !t.inTree(sid) {
			return key, nil, err
		}
	}
	return key, ends, nil
}

// hasGroup reports whether a process dumped is in process group pgrp.
func (t *Table) hasGroup(pgrp int) bool {
	for _, p := range t.order {
		if st, err := proc.ReadStat(p); err == nil && st.Pgrp == pgrp {
			return true
		}
	}
	return false
}

// laterSlave finds a descriptor of the slave of pseudo-terminal key in
// a process of the tree dumped, and restored, after this one (pid 0 if
// none).
func (t *Table) laterSlave(key ptyKey) (pid, fd int, err error) {
	i := slices.Index(t.order, t.pid)
	if i < 0 {
		return 0, 0, nil
	}
	for _, p := range t.order[i+1:] {
		fds, err := proc.ReadFds(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // a zombie, or gone
			}
			return 0, 0, err
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if err := unix.Stat(proc.Path(p, "fd/"+strconv.Itoa(fd)), &st); err != nil {
				continue // closed meanwhile, or not reachable
			}
			if st.Mode&unix.S_IFMT == unix.S_IFCHR && !isPtmx(st.Rdev) && st.Dev == key.dev && slaveIndex(st.Rdev) == key.index {
				if typ, _ := ttyTypeOf(st.Rdev); typ == pb.TtyType_PTY {
					return p, fd, nil
				}
			}
		}
	}
	return 0, 0, nil
}

// slaveSession is the session whose controlling terminal the slave of
// master descriptor fd of the process is, 0 if none.
func (t *Table) slaveSession(fd int) (int, error) {
	m, err := kernel.Getfd(t.view, fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(m)
	sid, err := ioctlID(m, unix.TIOCGSID)
	return int(sid), err
}

// inTree reports whether process pid is the root of the tree dumped or
// one of its descendants.
func (t *Table) inTree(pid int) bool {
	for pid > 1 {
		if pid == t.root {
			return true
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			return false
		}
		pid = st.PPid
	}
	return false
}

// scanPtys finds every pseudo-terminal end among the process's
// descriptors.
func (t *Table) scanPtys() error {
	t.ptys = map[ptyKey]*ptyEnds{}
	fds, err := proc.ReadFds(t.view)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		path := proc.Path(t.view, "fd/"+strconv.Itoa(fd))
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // closed meanwhile: the process runs until seized
			}
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		if typ, _ := ttyTypeOf(st.Rdev); typ != pb.TtyType_PTY {
			continue
		}
		link, err := os.Readlink(path)
		if err != nil {
			return err
		}
		info, err := proc.ReadFdinfo(t.view, fd)
		if err != nil {
			return err
		}
		key, err := t.ptyKeyOf(fd, link, &st, info)
		if err != nil {
			return fmt.Errorf("fd %d (%s): %w", fd, link, err)
		}
		e := t.ptys[key]
		if e == nil {
			e = &ptyEnds{master: -1, slave: -1}
			t.ptys[key] = e
		}
		if isPtmx(st.Rdev) {
			e.master = fd
		} else if e.slave < 0 {
			e.slave = fd
		}
	}
	return nil
}

// ptyKeyOf names the pseudo-terminal of descriptor fd: a slave by its
// devpts and number, a master by the number fdinfo gives and the devpts
// its multiplexer makes pseudo-terminals in: the one it lies in
// (/dev/pts/ptmx), or the "pts" beside it (/dev/ptmx).
func (t *Table) ptyKeyOf(fd int, link string, st *unix.Stat_t, info proc.Fdinfo) (ptyKey, error) {
	if !isPtmx(st.Rdev) {
		return ptyKey{st.Dev, slaveIndex(st.Rdev)}, nil
	}
	index, err := info.TTYIndex()
	if err != nil {
		return ptyKey{}, err
	}
	root := proc.Path(t.view, "root")
	var fsst unix.Statfs_t
	if err := unix.Statfs(proc.Path(t.view, "fd/"+strconv.Itoa(fd)), &fsst); err != nil {
		return ptyKey{}, err
	}
	if fsst.Type == unix.DEVPTS_SUPER_MAGIC {
		return ptyKey{st.Dev, index}, nil
	}
	var pts unix.Stat_t
	if err := unix.Stat(filepath.Join(root, filepath.Dir(link), "pts"), &pts); err != nil {
		return ptyKey{}, fmt.Errorf("find the devpts of %s: %w", link, err)
	}
	return ptyKey{pts.Dev, index}, nil
}

// openPeer opens the slave of master m in cryo.
func openPeer(m int) (int, error) {
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return -1, fmt.Errorf("open the slave: %w", errno)
	}
	return int(s), nil
}

// ioctlID reads a process id a terminal ioctl returns, 0 when the
// terminal has none (ENOTTY).
func ioctlID(fd int, req uint) (uint32, error) {
	v, err := unix.IoctlGetInt(fd, req)
	if errors.Is(err, unix.ENOTTY) {
		return 0, nil
	}
	return uint32(v), err
}

func ioctlBool(fd int, req uint) (bool, error) {
	v, err := unix.IoctlGetInt(fd, req)
	return v != 0, err
}

// dumpPty records a pseudo-terminal whose both ends the process holds:
// one tty-info entry per end, and the data queued in each direction.
func (t *Table) dumpPty(key ptyKey, ends *ptyEnds) error {
	m, err := kernel.Getfd(t.view, ends.master)
	if err != nil {
		return err
	}
	defer unix.Close(m)
	var s int
	switch {
	case ends.slavePid != 0:
		s, err = kernel.Getfd(ends.slavePid, ends.slave)
	case ends.slave >= 0:
		s, err = kernel.Getfd(t.view, ends.slave)
	default:
		// Held as the controlling terminal alone: cryo opens it, and its
		// closing leaves the master as it was (its other end closed).
		s, err = openPeer(m)
	}
	if err != nil {
		return err
	}
	defer unix.Close(s)
	// On the master, these read the slave's settings, session and group.
	tio, err := unix.IoctlGetTermios(m, unix.TCGETS2)
	if err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	ws, err := unix.IoctlGetWinsize(m, unix.TIOCGWINSZ)
	if err != nil {
		return fmt.Errorf("read window size: %w", err)
	}
	var errs [6]error
	var sid, pgrp uint32
	var locked, packet bool
	var excl [2]bool
	sid, errs[0] = ioctlID(m, unix.TIOCGSID)
	pgrp, errs[1] = ioctlID(m, unix.TIOCGPGRP)
	locked, errs[2] = ioctlBool(m, unix.TIOCGPTLCK)
	packet, errs[3] = ioctlBool(m, unix.TIOCGPKT)
	excl[0], errs[4] = ioctlBool(s, unix.TIOCGEXCL)
	excl[1], errs[5] = ioctlBool(m, unix.TIOCGEXCL)
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	// A restore makes it the controlling terminal of the session's
	// leader, then gives the foreground to the group that had it, which
	// must be one of the checkpoint's.
	switch {
	case sid != 0 && !t.inTree(int(sid)):
		return fmt.Errorf("%w: it is the controlling terminal of session %d, outside the checkpoint", ErrUnsupported, sid)
	case sid != 0 && pgrp != sid && !t.hasGroup(int(pgrp)):
		return fmt.Errorf("%w: its foreground process group %d has no process in the checkpoint", ErrUnsupported, pgrp)
	}
	var sst unix.Stat_t
	if err := unix.Fstat(s, &sst); err != nil {
		return err
	}
	if t.externalPtys[key] {
		return fmt.Errorf("%w: another process of the tree holds its slave as a shell job's terminal", ErrUnsupported)
	}
	var infos [2]uint32
	for side, rdev := range []uint64{sst.Rdev, unix.Mkdev(5, 2)} {
		infos[side] = t.addInfo(&pb.TtyInfoEntry{
			Type: pb.TtyType_PTY, Locked: locked, Exclusive: excl[side],
			PacketMode: packet, Sid: sid, Pgrp: pgrp, Rdev: uint32(rdev),
			Termios: termiosEntry(tio), Winsize: winsizeEntry(ws),
			Pty: &pb.TtyPtyEntry{Index: key.index}, Uid: pb.Uint32(sst.Uid), Gid: pb.Uint32(sst.Gid),
		})
	}
	if t.ptyInfos == nil {
		t.ptyInfos = map[ptyKey][2]uint32{}
	}
	t.ptyInfos[key] = infos
	if t.ptyOwners == nil {
		t.ptyOwners = map[ptyKey]int{}
	}
	t.ptyOwners[key] = t.pid
	q, err := takeQueued(m, s, tio, packet)
	if err != nil {
		return err
	}
	for side, data := range [2][]byte{q.toSlave, q.toMaster} {
		if len(data) > 0 {
			t.ttyData = append(t.ttyData, &pb.TtyDataEntry{TtyId: infos[side], Data: data})
		}
	}
	return nil
}

// cttyInfo records /dev/tty: the process's controlling terminal, which
// must be in the checkpoint or, for a shell job, the terminal it is
// restored on.
func (t *Table) cttyInfo(d *desc) (uint32, error) {
	stat, err := t.procStat()
	if err != nil {
		return 0, err
	}
	if stat.TtyNr == 0 {
		return 0, fmt.Errorf("%w: fd %d is /dev/tty, but the process has no controlling terminal", ErrUnsupported, d.fd)
	}
	if !t.shellJob && int(stat.Session) != t.pid {
		return 0, fmt.Errorf("%w: fd %d is /dev/tty, and the controlling terminal is another session's: dump with --shell-job", ErrUnsupported, d.fd)
	}
	return t.addInfo(&pb.TtyInfoEntry{
		Type: pb.TtyType_CTTY, Locked: false, Exclusive: false, PacketMode: false,
		Sid: uint32(stat.Session), Pgrp: 0, Rdev: uint32(d.st.Rdev),
	}), nil
}

// externalInfo records a shell job's terminal: its settings and window
// size, and, if it is the process's controlling terminal, its session and
// foreground group. What is queued in it is the terminal's, not the
// process's: it stays there.
func (t *Table) externalInfo(d *desc, typ pb.TtyType) (uint32, error) {
	if id, ok := t.external[d.st.Rdev]; ok {
		return id, nil
	}
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
	if err != nil {
		return 0, fmt.Errorf("read settings of %s: %w", d.link, err)
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return 0, fmt.Errorf("read window size of %s: %w", d.link, err)
	}
	stat, err := t.procStat()
	if err != nil {
		return 0, err
	}
	var sid, pgrp uint32
	if uint64(stat.TtyNr) == d.st.Rdev {
		sid = uint32(stat.Session)
		pgrp = uint32(max(stat.TPgid, 0))
	}
	e := &pb.TtyInfoEntry{
		Type: typ, Locked: false, Exclusive: false, PacketMode: false,
		Sid: sid, Pgrp: pgrp, Rdev: uint32(d.st.Rdev),
		Termios: termiosEntry(tio), Winsize: winsizeEntry(ws), Uid: pb.Uint32(d.st.Uid), Gid: pb.Uint32(d.st.Gid),
	}
	if typ == pb.TtyType_PTY {
		key := ptyKey{d.st.Dev, slaveIndex(d.st.Rdev)}
		if _, ok := t.ptyInfos[key]; ok {
			return 0, fmt.Errorf("%w: fd %d is the slave of pseudo-terminal %d, which another process of the tree holds", ErrUnsupported, d.fd, key.index)
		}
		if t.externalPtys == nil {
			t.externalPtys = map[ptyKey]bool{}
		}
		t.externalPtys[key] = true
		e.Pty = &pb.TtyPtyEntry{Index: key.index}
	}
	if t.external == nil {
		t.external = map[uint64]uint32{}
	}
	t.external[d.st.Rdev] = t.addInfo(e)
	return t.external[d.st.Rdev], nil
}

func termiosEntry(t *unix.Termios) *pb.TermiosEntry {
	cc := make([]uint32, len(t.Cc))
	for i, c := range t.Cc {
		cc[i] = uint32(c)
	}
	return &pb.TermiosEntry{
		CIflag: t.Iflag, COflag: t.Oflag, CCflag: t.Cflag, CLflag: t.Lflag,
		CLine: uint32(t.Line), CIspeed: t.Ispeed, COspeed: t.Ospeed, CCc: cc,
	}
}

// termiosOf is the inverse of termiosEntry; control characters past the
// kernel's (an image with a C library's 32) are dropped.
func termiosOf(e *pb.TermiosEntry) *unix.Termios {
	t := &unix.Termios{
		Iflag: e.GetCIflag(), Oflag: e.GetCOflag(), Cflag: e.GetCCflag(), Lflag: e.GetCLflag(),
		Line: uint8(e.GetCLine()), Ispeed: e.GetCIspeed(), Ospeed: e.GetCOspeed(),
	}
	for i, c := range e.GetCCc() {
		if i < len(t.Cc) {
			t.Cc[i] = uint8(c)
		}
	}
	return t
}

func winsizeEntry(w *unix.Winsize) *pb.WinsizeEntry {
	return &pb.WinsizeEntry{WsRow: uint32(w.Row), WsCol: uint32(w.Col),
		WsXpixel: uint32(w.Xpixel), WsYpixel: uint32(w.Ypixel)}
}

func winsizeOf(e *pb.WinsizeEntry) *unix.Winsize {
	return &unix.Winsize{Row: uint16(e.GetWsRow()), Col: uint16(e.GetWsCol()), Xpixel: uint16(e.GetWsXpixel()), Ypixel: uint16(e.GetWsYpixel())}
}

// ttySet is the terminals of a checkpoint: tty-info entries and queued
// data, by tty-info id.
type ttySet struct {
	ttyInfos map[uint32]*pb.TtyInfoEntry
	ttyData  map[uint32][]byte
	// ptyPairs are the tty-info ids of each pseudo-terminal in the
	// checkpoint by index: slave, master.
	ptyPairs map[uint32]*[2]uint32
}

// loadTTYs reads tty-info.img and tty-data.img, which must be there when
// the checkpoint has terminals, and pairs the pseudo-terminals' ends.
func (s *Set) loadTTYs() error {
	s.ttyInfos, s.ttyData, s.ptyPairs = map[uint32]*pb.TtyInfoEntry{}, map[uint32][]byte{}, map[uint32]*[2]uint32{}
	infos, err := image.ReadAll[pb.TtyInfoEntry](s.dir, image.TTYInfo, 0)
	if errors.Is(err, fs.ErrNotExist) {
		for _, f := range s.Files {
			if f.GetType() == pb.FdTypes_TTY {
				return imageErr("%s is missing: file %d is a terminal", image.TTYInfo.FileName(0), f.GetId())
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, e := range infos {
		if s.ttyInfos[e.GetId()] != nil {
			return imageErr("tty-info.img: id %d twice", e.GetId())
		}
		s.ttyInfos[e.GetId()] = e
	}
	for _, e := range infos {
		if e.GetType() != pb.TtyType_PTY || e.Pty == nil {
			continue
		}
		p := s.ptyPairs[e.Pty.GetIndex()]
		if p == nil {
			p = &[2]uint32{}
			s.ptyPairs[e.Pty.GetIndex()] = p
		}
		side := 0
		if isPtmx(uint64(e.GetRdev())) {
			side = 1
		}
		if p[side] != 0 {
			return imageErr("tty-info.img: entries %d and %d are the same end of pseudo-terminal %d", p[side], e.GetId(), e.Pty.GetIndex())
		}
		p[side] = e.GetId()
	}
	datas, err := image.ReadAll[pb.TtyDataEntry](s.dir, image.TTYData, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // CRIU writes it only for data
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, d := range datas {
		e := s.ttyInfos[d.GetTtyId()]
		if e == nil || !s.inPair(e) || s.ptyPairs[e.Pty.GetIndex()][1] == 0 {
			return imageErr("tty-data.img: data for terminal %d, which is no pseudo-terminal of the checkpoint with both ends", d.GetTtyId())
		}
		s.ttyData[d.GetTtyId()] = append(s.ttyData[d.GetTtyId()], d.GetData()...)
	}
	return nil
}

func (ttyKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetTty() == nil {
		return imageErr("file %d: TTY without a tty entry", f.GetId())
	}
	if reg := s.File(f.GetTty().GetRegfId()); reg == nil || reg.GetReg() == nil {
		return imageErr("file %d: TTY without its path entry", f.GetId())
	}
	e := s.ttyInfos[f.GetTty().GetTtyInfoId()]
	switch {
	case e == nil:
		return imageErr("file %d: terminal %d, which tty-info.img lacks", f.GetId(), f.GetTty().GetTtyInfoId())
	case e.GetType() == pb.TtyType_PTY && e.Pty == nil:
		return imageErr("file %d: pseudo-terminal %d without its index", f.GetId(), e.GetId())
	case e.GetType() == pb.TtyType_PTY && isPtmx(uint64(e.GetRdev())) && s.ptyPairs[e.Pty.GetIndex()][0] == 0:
		return fmt.Errorf("%w: file %d is the master of pseudo-terminal %d, whose slave is not in the checkpoint", ErrUnsupported, f.GetId(), e.Pty.GetIndex())
	}
	return nil
}

// inPair reports whether tty-info e is an end of a pseudo-terminal the
// restore makes: one whose both ends are in the checkpoint, or a slave
// hung up when its master closed (an entry without settings).
func (s *Set) inPair(e *pb.TtyInfoEntry) bool {
	if e.GetType() != pb.TtyType_PTY || e.Pty == nil {
		return false
	}
	p := s.ptyPairs[e.Pty.GetIndex()]
	return p != nil && p[0] != 0 && (p[1] != 0 || s.ttyInfos[p[0]].Termios == nil)
}

// ttyRestorer holds the terminals given so far.
type ttyRestorer struct {
	// settled are the tty-info ids of the terminals given their
	// settings.
	settled map[uint32]bool
	// ttyNotes are what the log should say of the terminals.
	ttyNotes []string
	// cttyDone is set once the process has its session's controlling
	// terminal.
	cttyDone bool
}

// ptyMade is a pseudo-terminal of the checkpoint made anew, in cryo: its
// master goes to the process that held it, and each process that held
// its slave opens it again; cryo holds both ends until every process has
// its descriptors (PtysOpened).
type ptyMade struct {
	index, newIndex uint32
	given           bool // the master went to an entry
	m, s            int  // cryo's master and slave
	slaveInfo       *pb.TtyInfoEntry
	masterInfo      *pb.TtyInfoEntry
}

func (ttyKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := r.set.ttyInfos[f.GetTty().GetTtyInfoId()]
	flags := f.GetTty().GetFlags() | unix.O_NOCTTY
	switch {
	case r.set.inPair(e):
		p, err := r.pty(e.Pty.GetIndex())
		if err != nil {
			return -1, err
		}
		if !isPtmx(uint64(e.GetRdev())) {
			return r.reopen(fmt.Sprintf("/dev/pts/%d", p.newIndex), flags, 0)
		}
		// The one master: other processes that held it share it
		// (takeShared) before it is made.
		if p.given {
			return -1, fmt.Errorf("%w: pseudo-terminal %d: its master held twice, apart", ErrUnsupported, p.index)
		}
		if _, err := unix.FcntlInt(uintptr(p.m), unix.F_SETFL, int(f.GetTty().GetFlags())); err != nil {
			return -1, fmt.Errorf("set flags %#o of the master of pseudo-terminal %d: %w", f.GetTty().GetFlags(), p.index, err)
		}
		p.given = true
		return unix.FcntlInt(uintptr(p.m), unix.F_DUPFD_CLOEXEC, 0)
	case e.GetType() == pb.TtyType_CTTY:
		// /dev/tty opens the controlling terminal of whoever opens it.
		path, err := r.controllingTerminal()
		if err != nil {
			return -1, err
		}
		return r.reopenHere(path, flags, 0)
	}
	if !r.shellJob {
		name := r.set.File(f.GetTty().GetRegfId()).GetReg().GetName()
		return -1, fmt.Errorf("%w: %s is a terminal outside the checkpoint: restore with --shell-job", ErrUnsupported, name)
	}
	path, err := ownTerminal()
	if err != nil {
		return -1, err
	}
	// Opened in the process, which sets it up (settle).
	n, err := r.open(path, reopenFlags(flags), 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	if !r.settled[e.GetId()] {
		if err := r.settle(n, e); err != nil {
			return -1, fmt.Errorf("%s: %w", path, err)
		}
	}
	return r.made(n)
}

// ownTerminal is the terminal cryo restores from, its standard input,
// which a shell job gets in place of its own.
func ownTerminal() (string, error) {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err != nil {
		return "", fmt.Errorf("--shell-job: cryo's standard input is not a terminal")
	}
	return os.Readlink("/proc/self/fd/0")
}

// settle gives the terminal behind the process's descriptor n the dumped
// settings and window size. The process sets them itself, with every
// signal blocked, so that a background group's change is not stopped by
// SIGTTOU.
func (r *Restorer) settle(n uint64, e *pb.TtyInfoEntry) error {
	scratch, err := r.tr.Scratch(r.pid)
	if err != nil {
		return err
	}
	if e.Termios != nil {
		if err := r.tr.WriteValue(scratch, *termiosOf(e.Termios)); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_IOCTL, n, unix.TCSETS2, scratch); err != nil {
			return fmt.Errorf("set terminal settings: %w", err)
		}
	}
	if e.Winsize != nil {
		if err := r.tr.WriteValue(scratch, *winsizeOf(e.Winsize)); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_IOCTL, n, unix.TIOCSWINSZ, scratch); err != nil {
			return fmt.Errorf("set window size: %w", err)
		}
	}
	if r.settled == nil {
		r.settled = map[uint32]bool{}
	}
	r.settled[e.GetId()] = true
	return nil
}

// pty returns the pseudo-terminal made for dumped index, making it the
// first time (see Shared.pty).
func (r *Restorer) pty(index uint32) (*ptyMade, error) {
	p, made, err := r.shared.pty(r.set, index)
	if err != nil {
		return nil, fmt.Errorf("pseudo-terminal %d: %w", index, err)
	}
	if made && p.newIndex != p.index {
		r.ttyNotes = append(r.ttyNotes, fmt.Sprintf("pseudo-terminal %d is /dev/pts/%d now", p.index, p.newIndex))
	}
	return p, nil
}

// pty returns the pseudo-terminal made for dumped index, and whether this
// call made it: a master from /dev/ptmx, unlocked, and its slave, which
// may have another number than the dumped one, given the dumped settings,
// window size, owner and queued data.
func (s *Shared) pty(set *Set, index uint32) (*ptyMade, bool, error) {
	if p, ok := s.ptys[index]; ok {
		return p, false, nil
	}
	ids := set.ptyPairs[index]
	p := &ptyMade{index: index, m: -1, s: -1, slaveInfo: set.ttyInfos[ids[0]], masterInfo: set.ttyInfos[ids[1]]} // nil for a hung-up slave
	s.ptys[index] = p
	var err error
	if p.m, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err != nil {
		return nil, false, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	m := p.m
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return nil, false, fmt.Errorf("unlock: %w", err)
	}
	newIndex, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		return nil, false, fmt.Errorf("read its number: %w", err)
	}
	p.newIndex = uint32(newIndex)
	if p.s, err = openPeer(m); err != nil {
		return nil, false, err
	}
	e := p.slaveInfo
	if err := unix.Fchown(p.s, int(e.GetUid()), int(e.GetGid())); err != nil {
		return nil, false, fmt.Errorf("chown /dev/pts/%d to %d:%d: %w", p.newIndex, e.GetUid(), e.GetGid(), err)
	}
	if p.masterInfo == nil {
		return p, true, nil // hung up once its slaves are open, by the master's closing
	}
	if e.Termios == nil || e.Winsize == nil {
		return nil, false, imageErr("pseudo-terminal %d without its settings or window size", p.index)
	}
	tio := termiosOf(e.Termios)
	if err := putQueued(m, p.s, tio, queued{toSlave: set.ttyData[e.GetId()], toMaster: set.ttyData[p.masterInfo.GetId()]}); err != nil {
		return nil, false, err
	}
	if err := unix.IoctlSetTermios(m, unix.TCSETS2, tio); err != nil {
		return nil, false, fmt.Errorf("set settings: %w", err)
	}
	if err := unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, winsizeOf(e.Winsize)); err != nil {
		return nil, false, fmt.Errorf("set window size: %w", err)
	}
	if e.GetPacketMode() {
		if err := unix.IoctlSetPointerInt(m, unix.TIOCPKT, 1); err != nil {
			return nil, false, fmt.Errorf("set packet mode: %w", err)
		}
	}
	return p, true, nil
}

// SessionTerminal gives the process, if it leads its session and that
// session's controlling terminal was a pseudo-terminal of the checkpoint,
// that terminal again, making it if it is the first to need it. The
// tree's restore calls it as soon as the process leads its session, before
// any of its children is born: they take the controlling terminal from
// their parent, the one way into a session's terminal for a process that
// does not lead it.
func (r *Restorer) SessionTerminal() error {
	_, err := r.sessionTerminal()
	return err
}

// sessionTerminal does SessionTerminal's work and reports whether the
// process has a controlling terminal of the checkpoint.
func (r *Restorer) sessionTerminal() (bool, error) {
	if r.cttyDone {
		return true, nil
	}
	index, ok := r.sessionPty()
	if !ok {
		return false, nil
	}
	p, err := r.pty(index)
	if err != nil {
		return true, err
	}
	n, err := r.open(fmt.Sprintf("/dev/pts/%d", p.newIndex), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return true, fmt.Errorf("open /dev/pts/%d: %w", p.newIndex, err)
	}
	err = r.sys(unix.SYS_IOCTL, n, unix.TIOCSCTTY, 0)
	if cerr := r.sys(unix.SYS_CLOSE, n); err == nil {
		err = cerr
	}
	if err != nil {
		return true, fmt.Errorf("make pseudo-terminal %d the controlling terminal: %w", index, err)
	}
	r.cttyDone = true
	return true, nil
}

// sessionPty returns the dumped index of the pseudo-terminal of the
// checkpoint that was the controlling terminal of the session the
// process leads, if there was one.
func (r *Restorer) sessionPty() (uint32, bool) {
	for index, ids := range r.set.ptyPairs {
		if e := r.set.ttyInfos[ids[0]]; r.set.inPair(e) && int(e.GetSid()) == r.pid {
			return index, true
		}
	}
	return 0, false
}

// controllingTerminal returns the path at which the process opens
// /dev/tty again: /dev/tty itself, once a pseudo-terminal of the
// checkpoint that was its session's is its controlling terminal, or, for
// a shell job, while it has a controlling terminal (cryo's session's); a
// shell job without one, which led its session, opens cryo's terminal.
func (r *Restorer) controllingTerminal() (string, error) {
	if ok, err := r.sessionTerminal(); ok || err != nil {
		return "/dev/tty", err
	}
	if !r.shellJob {
		return "", fmt.Errorf("%w: /dev/tty is a terminal outside the checkpoint: restore with --shell-job", ErrUnsupported)
	}
	st, err := proc.ReadStat(r.pid)
	if err != nil || st.TtyNr != 0 {
		return "/dev/tty", err
	}
	return ownTerminal()
}

// PtysOpened ends the pseudo-terminals once every process of the tree has
// its descriptors (the slaves open, /dev/tty included, which a locked
// pair refuses): it locks those that were locked and sets their
// exclusive mode, through cryo's ends, then closes these, the last hold
// on the master of a slave that was hung up.
func (s *Shared) PtysOpened() error {
	var errs []error
	for _, p := range s.ptys {
		if err := p.finish(); err != nil {
			errs = append(errs, fmt.Errorf("pseudo-terminal %d: %w", p.index, err))
		}
	}
	s.closePtys()
	return errors.Join(errs...)
}

// finish locks the pair if it was locked and sets its ends' exclusive
// mode.
func (p *ptyMade) finish() error {
	if p.masterInfo == nil {
		return nil
	}
	if p.masterInfo.GetLocked() {
		if err := unix.IoctlSetPointerInt(p.m, unix.TIOCSPTLCK, 1); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	for _, x := range []struct {
		fd int
		e  *pb.TtyInfoEntry
	}{{p.m, p.masterInfo}, {p.s, p.slaveInfo}} {
		if x.e.GetExclusive() {
			if err := unix.IoctlSetInt(x.fd, unix.TIOCEXCL, 0); err != nil {
				return fmt.Errorf("set exclusive: %w", err)
			}
		}
	}
	return nil
}

// closePtys closes cryo's ends of the pseudo-terminals made.
func (s *Shared) closePtys() {
	for _, p := range s.ptys {
		for _, fd := range []int{p.m, p.s} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	s.ptys = map[uint32]*ptyMade{}
}

// Foreground gives back, for a shell job, the foreground of the terminal
// it is restored on, if its process group (pgid at the dump) had it: the
// group must be the process's own by now. A process that led its session
// gets the terminal as its controlling terminal again if the terminal is
// no other session's.
func (r *Restorer) Foreground(pgid int) ([]string, error) {
	notes := r.ttyNotes
	for _, fd := range r.set.Fds {
		f := r.set.File(fd.GetId())
		if f.GetType() != pb.FdTypes_TTY {
			continue
		}
		e := r.set.ttyInfos[f.GetTty().GetTtyInfoId()]
		if r.set.inPair(e) || e.GetType() == pb.TtyType_CTTY || e.GetSid() == 0 || !r.settled[e.GetId()] {
			continue
		}
		delete(r.settled, e.GetId()) // once per terminal
		n := uint64(fd.GetFd())
		if int(e.GetSid()) == r.pid {
			if err := r.sys(unix.SYS_IOCTL, n, unix.TIOCSCTTY, 0); err != nil {
				notes = append(notes, fmt.Sprintf("the process led its session, whose controlling terminal cryo's terminal cannot become (%v): it has none", err))
				continue
			}
		}
		if int(e.GetPgrp()) != pgid || pgid != r.pid {
			continue // not in the foreground, or in cryo's group, whose the foreground is
		}
		if err := r.setForeground(n, r.pid); err != nil {
			return notes, err
		}
	}
	return notes, nil
}

// SessionForeground gives the foreground of the process's session's
// controlling terminal, if it was a pseudo-terminal of the checkpoint,
// back to the process group that had it: the leader's has it since the
// leader took the terminal (SessionTerminal), and the others exist once
// every process of the tree is born.
func (r *Restorer) SessionForeground() error {
	index, ok := r.sessionPty()
	if !ok {
		return nil
	}
	pgrp := int(r.set.ttyInfos[r.set.ptyPairs[index][0]].GetPgrp())
	if pgrp == 0 || pgrp == r.pid {
		return nil
	}
	p, err := r.pty(index)
	if err != nil {
		return err
	}
	n, err := r.open(fmt.Sprintf("/dev/pts/%d", p.newIndex), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/pts/%d: %w", p.newIndex, err)
	}
	err = r.setForeground(n, pgrp)
	if cerr := r.sys(unix.SYS_CLOSE, n); err == nil {
		err = cerr
	}
	return err
}

// setForeground makes process group pgrp the foreground of the terminal
// of the process's descriptor n.
func (r *Restorer) setForeground(n uint64, pgrp int) error {
	scratch, err := r.tr.Scratch(r.pid)
	if err != nil {
		return err
	}
	if err := r.tr.WriteValue(scratch, int32(pgrp)); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_IOCTL, n, unix.TIOCSPGRP, scratch); err != nil {
		return fmt.Errorf("make process group %d the foreground of the terminal: %w", pgrp, err)
	}
	return nil
}
