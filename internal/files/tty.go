package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
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

func (ttyKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_TTY }

func (ttyKind) claims(d *desc) bool {
	if !strings.HasPrefix(d.link, "/") || d.mode() != unix.S_IFCHR {
		return false
	}
	_, ok := ttyTypeOf(d.st.Rdev)
	return ok
}

// ttyTypeOf tells the type of terminal a character device is, by its
// numbers (Documentation/admin-guide/devices.txt).
func ttyTypeOf(rdev uint64) (tty.TtyType, bool) {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	switch {
	case major == 5 && minor == 0:
		return tty.TtyType_CTTY, true
	case major == 5 && minor == 1:
		return tty.TtyType_CONSOLE, true
	case major == 5 && minor == 2, major >= 136 && major <= 143:
		return tty.TtyType_PTY, true
	case major == 4 && minor < 64:
		return tty.TtyType_VT, true
	case major == 4:
		return tty.TtyType_SERIAL, true
	}
	return tty.TtyType_UNKNOWN, false
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
// dumped process holds (-1 where it holds none).
type ptyEnds struct{ master, slave int }

// ttyTable is the terminals of the processes being dumped. A
// pseudo-terminal is one process's: the restore makes it there, and the
// other processes of the tree can share its ends' open file
// descriptions, not open their own.
type ttyTable struct {
	root     int // the root of the tree dumped
	ttyInfos []*tty.TtyInfoEntry
	ttyData  []*tty.TtyDataEntry
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

func (t *ttyTable) addInfo(e *tty.TtyInfoEntry) uint32 {
	e.Id = proto.Uint32(uint32(len(t.ttyInfos) + 1))
	t.ttyInfos = append(t.ttyInfos, e)
	return e.GetId()
}

func (t *ttyTable) write(dir *image.Dir) error {
	if err := image.WriteAll(dir, image.TTYInfo, 0, t.ttyInfos); err != nil {
		return err
	}
	return image.WriteAll(dir, image.TTYData, 0, t.ttyData)
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
	t.add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(regID), Reg: regEntry(regID, path, d)})
	id := t.nextID()
	return t.add(&fdinfo.FileEntry{
		Type: fdinfo.FdTypes_TTY.Enum(), Id: proto.Uint32(id),
		Tty: &tty.TtyFileEntry{
			Id: proto.Uint32(id), TtyInfoId: proto.Uint32(info), Flags: proto.Uint32(statusFlags(d.info)),
			Fown: zeroFown(), RegfId: proto.Uint32(regID),
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
	if typ == tty.TtyType_CTTY {
		return t.cttyInfo(d)
	}
	if typ == tty.TtyType_PTY {
		key, ends, err := t.ptyOf(d)
		if err != nil {
			return 0, fmt.Errorf("fd %d (%s): %w", d.fd, path, err)
		}
		master := isPtmx(d.st.Rdev)
		infos, dumped := t.ptyInfos[key]
		switch {
		case dumped && t.ptyOwners[key] != t.pid:
			return 0, fmt.Errorf("%w: fd %d is an end of pseudo-terminal %d, which another process of the tree holds: opened apart from it, not inherited",
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
// checkpoint: a restore could not give it back. Nor can it give a
// pseudo-terminal of the checkpoint as controlling terminal to a process
// of the session but its leader, which sets it: such a process is
// refused.
func (t *Table) checkControllingTerminal() error {
	stat, err := t.procStat()
	if err != nil || stat.TtyNr == 0 {
		return err
	}
	if stat.Session != t.pid {
		for _, infos := range t.ptyInfos {
			if e := t.ttyInfos[infos[0]-1]; int(e.GetSid()) == stat.Session {
				return fmt.Errorf("%w: the controlling terminal of the process's session is pseudo-terminal %d of the checkpoint, which a restore gives back to the session's leader alone",
					ErrUnsupported, e.Pty.GetIndex())
			}
		}
		return nil
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
	if typ, _ := ttyTypeOf(d.st.Rdev); typ != tty.TtyType_PTY || isPtmx(d.st.Rdev) {
		return 0, refuse
	}
	fd, err := kernel.Getfd(t.pid, d.fd)
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
	t.hungUp[key] = t.addInfo(&tty.TtyInfoEntry{
		Type: tty.TtyType_PTY.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false), PacketMode: proto.Bool(false),
		Sid: proto.Uint32(0), Pgrp: proto.Uint32(0), Rdev: proto.Uint32(uint32(d.st.Rdev)),
		Pty: &tty.TtyPtyEntry{Index: proto.Uint32(key.index)}, Uid: proto.Uint32(d.st.Uid), Gid: proto.Uint32(d.st.Gid),
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
		// The slave may be held as the controlling terminal of a
		// session of the tree alone.
		if sid, err := t.slaveSession(ends.master); err != nil || sid == 0 || !t.inTree(sid) {
			return key, nil, err
		}
	}
	return key, ends, nil
}

// slaveSession is the session whose controlling terminal the slave of
// master descriptor fd of the process is, 0 if none.
func (t *Table) slaveSession(fd int) (int, error) {
	m, err := kernel.Getfd(t.pid, fd)
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
	fds, err := proc.ReadFds(t.pid)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		path := proc.Path(t.pid, "fd/"+strconv.Itoa(fd))
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
		if typ, _ := ttyTypeOf(st.Rdev); typ != tty.TtyType_PTY {
			continue
		}
		link, err := os.Readlink(path)
		if err != nil {
			return err
		}
		info, err := proc.ReadFdinfo(t.pid, fd)
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
	root := proc.Path(t.pid, "root")
	var fsst unix.Statfs_t
	if err := unix.Statfs(proc.Path(t.pid, "fd/"+strconv.Itoa(fd)), &fsst); err != nil {
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
	m, err := kernel.Getfd(t.pid, ends.master)
	if err != nil {
		return err
	}
	defer unix.Close(m)
	var s int
	if ends.slave >= 0 {
		s, err = kernel.Getfd(t.pid, ends.slave)
	} else {
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
	// leader, whose group then has the foreground.
	switch {
	case sid != 0 && !t.inTree(int(sid)):
		return fmt.Errorf("%w: it is the controlling terminal of session %d, outside the checkpoint", ErrUnsupported, sid)
	case sid != 0 && pgrp != sid:
		return fmt.Errorf("%w: its foreground process group %d is not its session's leader's, %d", ErrUnsupported, pgrp, sid)
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
		infos[side] = t.addInfo(&tty.TtyInfoEntry{
			Type: tty.TtyType_PTY.Enum(), Locked: proto.Bool(locked), Exclusive: proto.Bool(excl[side]),
			PacketMode: proto.Bool(packet), Sid: proto.Uint32(sid), Pgrp: proto.Uint32(pgrp), Rdev: proto.Uint32(uint32(rdev)),
			Termios: termiosEntry(tio), Winsize: winsizeEntry(ws),
			Pty: &tty.TtyPtyEntry{Index: proto.Uint32(key.index)}, Uid: proto.Uint32(sst.Uid), Gid: proto.Uint32(sst.Gid),
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
			t.ttyData = append(t.ttyData, &tty.TtyDataEntry{TtyId: proto.Uint32(infos[side]), Data: data})
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
	return t.addInfo(&tty.TtyInfoEntry{
		Type: tty.TtyType_CTTY.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false), PacketMode: proto.Bool(false),
		Sid: proto.Uint32(uint32(stat.Session)), Pgrp: proto.Uint32(0), Rdev: proto.Uint32(uint32(d.st.Rdev)),
	}), nil
}

// externalInfo records a shell job's terminal: its settings and window
// size, and, if it is the process's controlling terminal, its session and
// foreground group. What is queued in it is the terminal's, not the
// process's: it stays there.
func (t *Table) externalInfo(d *desc, typ tty.TtyType) (uint32, error) {
	if id, ok := t.external[d.st.Rdev]; ok {
		return id, nil
	}
	fd, err := kernel.Getfd(t.pid, d.fd)
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
	e := &tty.TtyInfoEntry{
		Type: typ.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false), PacketMode: proto.Bool(false),
		Sid: proto.Uint32(sid), Pgrp: proto.Uint32(pgrp), Rdev: proto.Uint32(uint32(d.st.Rdev)),
		Termios: termiosEntry(tio), Winsize: winsizeEntry(ws), Uid: proto.Uint32(d.st.Uid), Gid: proto.Uint32(d.st.Gid),
	}
	if typ == tty.TtyType_PTY {
		key := ptyKey{d.st.Dev, slaveIndex(d.st.Rdev)}
		if _, ok := t.ptyInfos[key]; ok {
			return 0, fmt.Errorf("%w: fd %d is the slave of pseudo-terminal %d, which another process of the tree holds", ErrUnsupported, d.fd, key.index)
		}
		if t.externalPtys == nil {
			t.externalPtys = map[ptyKey]bool{}
		}
		t.externalPtys[key] = true
		e.Pty = &tty.TtyPtyEntry{Index: proto.Uint32(key.index)}
	}
	if t.external == nil {
		t.external = map[uint64]uint32{}
	}
	t.external[d.st.Rdev] = t.addInfo(e)
	return t.external[d.st.Rdev], nil
}

func termiosEntry(t *unix.Termios) *tty.TermiosEntry {
	cc := make([]uint32, len(t.Cc))
	for i, c := range t.Cc {
		cc[i] = uint32(c)
	}
	return &tty.TermiosEntry{
		CIflag: proto.Uint32(t.Iflag), COflag: proto.Uint32(t.Oflag), CCflag: proto.Uint32(t.Cflag), CLflag: proto.Uint32(t.Lflag),
		CLine: proto.Uint32(uint32(t.Line)), CIspeed: proto.Uint32(t.Ispeed), COspeed: proto.Uint32(t.Ospeed), CCc: cc,
	}
}

// termiosOf is the inverse of termiosEntry; control characters past the
// kernel's (an image with a C library's 32) are dropped.
func termiosOf(e *tty.TermiosEntry) *unix.Termios {
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

func winsizeEntry(w *unix.Winsize) *tty.WinsizeEntry {
	return &tty.WinsizeEntry{WsRow: proto.Uint32(uint32(w.Row)), WsCol: proto.Uint32(uint32(w.Col)),
		WsXpixel: proto.Uint32(uint32(w.Xpixel)), WsYpixel: proto.Uint32(uint32(w.Ypixel))}
}

func winsizeOf(e *tty.WinsizeEntry) *unix.Winsize {
	return &unix.Winsize{Row: uint16(e.GetWsRow()), Col: uint16(e.GetWsCol()), Xpixel: uint16(e.GetWsXpixel()), Ypixel: uint16(e.GetWsYpixel())}
}

// ttySet is the terminals of a checkpoint: tty-info entries and queued
// data, by tty-info id.
type ttySet struct {
	ttyInfos map[uint32]*tty.TtyInfoEntry
	ttyData  map[uint32][]byte
	// ptyPairs are the tty-info ids of each pseudo-terminal in the
	// checkpoint by index: slave, master.
	ptyPairs map[uint32]*[2]uint32
}

// loadTTYs reads tty-info.img and tty-data.img, which must be there when
// the checkpoint has terminals, and pairs the pseudo-terminals' ends.
func (s *Set) loadTTYs() error {
	s.ttyInfos, s.ttyData, s.ptyPairs = map[uint32]*tty.TtyInfoEntry{}, map[uint32][]byte{}, map[uint32]*[2]uint32{}
	infos, err := image.ReadAll[tty.TtyInfoEntry](s.dir, image.TTYInfo, 0)
	if errors.Is(err, fs.ErrNotExist) {
		for _, f := range s.Files {
			if f.GetType() == fdinfo.FdTypes_TTY {
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
		if e.GetType() != tty.TtyType_PTY || e.Pty == nil {
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
	datas, err := image.ReadAll[tty.TtyDataEntry](s.dir, image.TTYData, 0)
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

func (ttyKind) check(s *Set, f *fdinfo.FileEntry) error {
	if f.Tty == nil {
		return imageErr("file %d: TTY without a tty entry", f.GetId())
	}
	if reg := s.Files[f.Tty.GetRegfId()]; reg == nil || reg.Reg == nil {
		return imageErr("file %d: TTY without its path entry", f.GetId())
	}
	e := s.ttyInfos[f.Tty.GetTtyInfoId()]
	switch {
	case e == nil:
		return imageErr("file %d: terminal %d, which tty-info.img lacks", f.GetId(), f.Tty.GetTtyInfoId())
	case e.GetType() == tty.TtyType_PTY && e.Pty == nil:
		return imageErr("file %d: pseudo-terminal %d without its index", f.GetId(), e.GetId())
	case e.GetType() == tty.TtyType_PTY && isPtmx(uint64(e.GetRdev())) && s.ptyPairs[e.Pty.GetIndex()][0] == 0:
		return fmt.Errorf("%w: file %d is the master of pseudo-terminal %d, whose slave is not in the checkpoint", ErrUnsupported, f.GetId(), e.Pty.GetIndex())
	}
	return nil
}

// inPair reports whether tty-info e is an end of a pseudo-terminal the
// restore makes: one whose both ends are in the checkpoint, or a slave
// hung up when its master closed (an entry without settings).
func (s *Set) inPair(e *tty.TtyInfoEntry) bool {
	if e.GetType() != tty.TtyType_PTY || e.Pty == nil {
		return false
	}
	p := s.ptyPairs[e.Pty.GetIndex()]
	return p != nil && p[0] != 0 && (p[1] != 0 || s.ttyInfos[p[0]].Termios == nil)
}

// ttyRestorer holds the terminals made so far.
type ttyRestorer struct {
	// pairs are the pseudo-terminals made, by dumped index.
	pairs map[uint32]*ptyMade
	// making are the pseudo-terminals of the group being opened.
	making []*ptyMade
	// settled are the tty-info ids of the terminals given their
	// settings.
	settled map[uint32]bool
	// ttyNotes are what the log should say of the terminals.
	ttyNotes []string
	// cttyDone is set once the process has its session's controlling
	// terminal.
	cttyDone bool
}

// ptyMade is a pseudo-terminal made in the process: its master and a
// slave descriptor, held in the process until its group is opened (a
// number they hold is free to the placement afterwards), and cryo's
// duplicates of them, held until every entry is open.
type ptyMade struct {
	index, newIndex uint32
	master, slave   uint64
	m, s            int // cryo's duplicates of master and slave, or -1
	slaveInfo       *tty.TtyInfoEntry
	masterInfo      *tty.TtyInfoEntry
}

// group makes the entries of one pseudo-terminal together, and /dev/tty
// with them if it is that terminal, made here as the controlling
// terminal of the session the process leads: the pair is made once, for
// the first of them, and what it needs of both ends is done before any
// is placed.
func (ttyKind) group(r *Restorer, f *fdinfo.FileEntry) (uint32, bool) {
	e := r.set.ttyInfos[f.Tty.GetTtyInfoId()]
	if r.set.inPair(e) {
		return e.Pty.GetIndex(), true
	}
	if e.GetType() == tty.TtyType_CTTY {
		if index, ok := r.sessionPty(); ok && r.holdsPty(index) {
			return index, true
		}
	}
	return 0, false
}

// groupOpened closes the process's descriptors of the pseudo-terminal of
// the group just opened: its entries have cryo's.
func (ttyKind) groupOpened(r *Restorer) error {
	for _, p := range r.making {
		for _, n := range []uint64{p.slave, p.master} {
			if err := r.sys(unix.SYS_CLOSE, n); err != nil {
				return err
			}
		}
	}
	r.making = nil
	return nil
}

func (ttyKind) open(r *Restorer, f *fdinfo.FileEntry) (int, error) {
	e := r.set.ttyInfos[f.Tty.GetTtyInfoId()]
	flags := f.Tty.GetFlags() | unix.O_NOCTTY
	switch {
	case r.set.inPair(e):
		p, err := r.pty(e.Pty.GetIndex())
		if err != nil {
			return -1, err
		}
		if isPtmx(uint64(e.GetRdev())) {
			// Made by /dev/ptmx with none of the entry's flags.
			if _, err := unix.FcntlInt(uintptr(p.m), unix.F_SETFL, int(f.Tty.GetFlags())); err != nil {
				return -1, fmt.Errorf("set flags %#o of the master of pseudo-terminal %d: %w", f.Tty.GetFlags(), p.index, err)
			}
			return unix.FcntlInt(uintptr(p.m), unix.F_DUPFD_CLOEXEC, 0)
		}
		return r.reopen(fmt.Sprintf("/dev/pts/%d", p.newIndex), flags, 0)
	case e.GetType() == tty.TtyType_CTTY:
		// /dev/tty opens the controlling terminal of whoever opens it.
		path, err := r.controllingTerminal()
		if err != nil {
			return -1, err
		}
		return r.reopenHere(path, flags, 0)
	}
	if !r.shellJob {
		name := r.set.Files[f.Tty.GetRegfId()].Reg.GetName()
		return -1, fmt.Errorf("%w: %s is a terminal outside the checkpoint: restore with --shell-job", ErrUnsupported, name)
	}
	path, err := ownTerminal()
	if err != nil {
		return -1, err
	}
	// Opened in the process, which sets it up (settle).
	n, err := r.openHere(path, flags)
	if err != nil {
		return -1, err
	}
	if !r.settled[e.GetId()] {
		if err := r.settle(n, e); err != nil {
			return -1, fmt.Errorf("%s: %w", path, err)
		}
	}
	return r.made(n)
}

// openHere opens a terminal in the process with an entry's flags, for
// what only the process can do with it.
func (r *Restorer) openHere(path string, flags uint32) (uint64, error) {
	n, err := r.open(path, uint64(flags&^unix.O_CLOEXEC), 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	return n, nil
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
func (r *Restorer) settle(n uint64, e *tty.TtyInfoEntry) error {
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

// pty returns the pseudo-terminal made for dumped index in the process,
// making it the first time: a master from /dev/ptmx, unlocked, and a slave by the
// number the kernel gave it (which may differ from the dumped one), with
// the dumped settings, window size, owner and queued data; and, if it was
// the controlling terminal of the process's session, it is again.
func (r *Restorer) pty(index uint32) (*ptyMade, error) {
	if p, ok := r.pairs[index]; ok {
		return p, nil
	}
	if _, made := r.shared.ptys[index]; made {
		return nil, fmt.Errorf("%w: pseudo-terminal %d is made by another process of the tree, whose ends this one holds apart", ErrUnsupported, index)
	}
	ids := r.set.ptyPairs[index]
	p := &ptyMade{index: index, m: -1, s: -1, slaveInfo: r.set.ttyInfos[ids[0]], masterInfo: r.set.ttyInfos[ids[1]]} // nil for a hung-up slave
	if r.pairs == nil {
		r.pairs = map[uint32]*ptyMade{}
	}
	r.pairs[index] = p
	r.making = append(r.making, p)
	if err := r.makePty(p); err != nil {
		return nil, fmt.Errorf("pseudo-terminal %d: %w", index, err)
	}
	return p, nil
}

func (r *Restorer) makePty(p *ptyMade) error {
	var err error
	if p.master, err = r.open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if p.m, err = r.getfd(p.master); err != nil {
		return err
	}
	m := p.m
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	newIndex, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("read its number: %w", err)
	}
	p.newIndex = uint32(newIndex)
	r.shared.ptys[p.index] = p.newIndex
	if p.newIndex != p.index {
		r.ttyNotes = append(r.ttyNotes, fmt.Sprintf("pseudo-terminal %d is /dev/pts/%d now", p.index, p.newIndex))
	}
	slave := fmt.Sprintf("/dev/pts/%d", p.newIndex)
	if p.slave, err = r.openHere(slave, unix.O_RDWR|unix.O_NOCTTY); err != nil {
		return err
	}
	if p.s, err = r.getfd(p.slave); err != nil {
		return err
	}
	s := p.s
	e := p.slaveInfo
	if err := unix.Fchown(s, int(e.GetUid()), int(e.GetGid())); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", slave, e.GetUid(), e.GetGid(), err)
	}
	if p.masterInfo == nil {
		return nil // hung up once its slaves are open, by the master's closing
	}
	if e.Termios == nil || e.Winsize == nil {
		return imageErr("pseudo-terminal %d without its settings or window size", p.index)
	}
	tio := termiosOf(e.Termios)
	if err := putQueued(m, s, tio, queued{toSlave: r.set.ttyData[e.GetId()], toMaster: r.set.ttyData[p.masterInfo.GetId()]}); err != nil {
		return err
	}
	if err := unix.IoctlSetTermios(m, unix.TCSETS2, tio); err != nil {
		return fmt.Errorf("set settings: %w", err)
	}
	if err := unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, winsizeOf(e.Winsize)); err != nil {
		return fmt.Errorf("set window size: %w", err)
	}
	if e.GetPacketMode() {
		if err := unix.IoctlSetPointerInt(m, unix.TIOCPKT, 1); err != nil {
			return fmt.Errorf("set packet mode: %w", err)
		}
	}
	if int(e.GetSid()) == r.pid {
		if err := r.sys(unix.SYS_IOCTL, p.slave, unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("make it the controlling terminal: %w", err)
		}
	}
	return nil
}

// sessionTerminal gives the process, which leads its session, the
// pseudo-terminal of the checkpoint that was its session's controlling
// terminal, if any, and reports whether there was one: made here, or
// made by another process of the tree, whose slave it opens to take it.
func (r *Restorer) sessionTerminal() (bool, error) {
	if r.cttyDone {
		return true, nil
	}
	index, ok := r.sessionPty()
	if !ok {
		return false, nil
	}
	r.cttyDone = true
	if _, mine := r.pairs[index]; mine {
		return true, nil
	}
	newIndex, made := r.shared.ptys[index]
	if !made {
		if !r.holdsPty(index) {
			return true, fmt.Errorf("%w: pseudo-terminal %d, the controlling terminal of the session, is held by a process of the tree restored after its leader", ErrUnsupported, index)
		}
		_, err := r.pty(index)
		return true, err
	}
	n, err := r.open(fmt.Sprintf("/dev/pts/%d", newIndex), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return true, fmt.Errorf("open /dev/pts/%d: %w", newIndex, err)
	}
	err = r.sys(unix.SYS_IOCTL, n, unix.TIOCSCTTY, 0)
	if cerr := r.sys(unix.SYS_CLOSE, n); err == nil {
		err = cerr
	}
	if err != nil {
		return true, fmt.Errorf("make pseudo-terminal %d the controlling terminal: %w", index, err)
	}
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

// holdsPty reports whether a descriptor of the process is an end of the
// pseudo-terminal of dumped index.
func (r *Restorer) holdsPty(index uint32) bool {
	for _, fd := range r.set.Fds {
		f := r.set.Files[fd.GetId()]
		if f.GetType() != fdinfo.FdTypes_TTY {
			continue
		}
		if e := r.set.ttyInfos[f.Tty.GetTtyInfoId()]; e.GetType() == tty.TtyType_PTY && e.Pty.GetIndex() == index {
			return true
		}
	}
	return false
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

// opened gives the process its session's controlling terminal if it
// was a pseudo-terminal of the checkpoint, and locks the pseudo-terminals
// that were locked and sets their exclusive mode, through cryo's
// duplicates, now that every entry has opened its slave (/dev/tty
// included, which a locked pair refuses); then cryo lets go of them, the
// last hold on the master of a slave that was hung up.
func (ttyKind) opened(r *Restorer) error {
	if _, err := r.sessionTerminal(); err != nil {
		return err
	}
	for _, p := range r.pairs {
		if err := p.finish(); err != nil {
			return fmt.Errorf("pseudo-terminal %d: %w", p.index, err)
		}
	}
	r.releasePtys()
	return nil
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
		e  *tty.TtyInfoEntry
	}{{p.m, p.masterInfo}, {p.s, p.slaveInfo}} {
		if x.e.GetExclusive() {
			if err := unix.IoctlSetInt(x.fd, unix.TIOCEXCL, 0); err != nil {
				return fmt.Errorf("set exclusive: %w", err)
			}
		}
	}
	return nil
}

// releasePtys closes cryo's duplicates of the pseudo-terminals made, and
// forgets them.
func (r *Restorer) releasePtys() {
	for _, p := range r.pairs {
		for _, fd := range []int{p.m, p.s} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	r.pairs, r.making = nil, nil
}

// Foreground gives back, for a shell job, the foreground of the terminal
// it is restored on, if its process group (pgid at the dump) had it: the
// group must be the process's own by now. A process that led its session
// gets the terminal as its controlling terminal again if the terminal is
// no other session's.
func (r *Restorer) Foreground(pgid int) ([]string, error) {
	notes := r.ttyNotes
	for _, fd := range r.set.Fds {
		f := r.set.Files[fd.GetId()]
		if f.GetType() != fdinfo.FdTypes_TTY {
			continue
		}
		e := r.set.ttyInfos[f.Tty.GetTtyInfoId()]
		if r.set.inPair(e) || e.GetType() == tty.TtyType_CTTY || e.GetSid() == 0 || !r.settled[e.GetId()] {
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
		scratch, err := r.tr.Scratch(r.pid)
		if err != nil {
			return notes, err
		}
		if err := r.tr.WriteValue(scratch, int32(r.pid)); err != nil {
			return notes, err
		}
		if err := r.sys(unix.SYS_IOCTL, n, unix.TIOCSPGRP, scratch); err != nil {
			return notes, fmt.Errorf("make process group %d the foreground of the terminal: %w", r.pid, err)
		}
	}
	return notes, nil
}
