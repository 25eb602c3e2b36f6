package files

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// The options every socket has, whatever its family (CRIU's
// sk_opts_entry), are read and set here for every socket kind: unix
// sockets (unixsk.go) and inet ones alike. Both directions work on a
// socket cryo holds, a pidfd_getfd duplicate of the process's
// (Getfd, Restorer.outside): the options belong to the socket, not to
// the descriptor, so what is set on the duplicate is the process's.
//
//   - DumpSockOpts(fd) reads them at dump, refusing an option the images
//     cannot hold;
//   - RestoreSockOpts(fd, opts) sets them again at restore;
//     RestoreSockBuffers(fd, opts) the buffer sizes alone, for a socket
//     to be filled before its other options are set.

// maxSockFilter is the most instructions of an attached socket filter
// (SO_ATTACH_FILTER) kept: BPF_MAXINSNS.
const maxSockFilter = 4096

// sockBoolOpts are the SOL_SOCKET options of sk_opts_entry that are
// flags, with their fields.
var sockBoolOpts = []struct {
	opt   int
	name  string
	field func(*pb.SkOptsEntry) **bool
}{
	{unix.SO_REUSEADDR, "SO_REUSEADDR", func(o *pb.SkOptsEntry) **bool { return &o.Reuseaddr }},
	{unix.SO_PASSCRED, "SO_PASSCRED", func(o *pb.SkOptsEntry) **bool { return &o.SoPasscred }},
	{unix.SO_PASSSEC, "SO_PASSSEC", func(o *pb.SkOptsEntry) **bool { return &o.SoPasssec }},
	{unix.SO_DONTROUTE, "SO_DONTROUTE", func(o *pb.SkOptsEntry) **bool { return &o.SoDontroute }},
	{unix.SO_NO_CHECK, "SO_NO_CHECK", func(o *pb.SkOptsEntry) **bool { return &o.SoNoCheck }},
	{unix.SO_REUSEPORT, "SO_REUSEPORT", func(o *pb.SkOptsEntry) **bool { return &o.SoReuseport }},
	{unix.SO_BROADCAST, "SO_BROADCAST", func(o *pb.SkOptsEntry) **bool { return &o.SoBroadcast }},
	{unix.SO_KEEPALIVE, "SO_KEEPALIVE", func(o *pb.SkOptsEntry) **bool { return &o.SoKeepalive }},
}

// sockIntOpts are the SOL_SOCKET options of sk_opts_entry that are
// numbers, with their fields.
var sockIntOpts = []struct {
	opt   int
	name  string
	field func(*pb.SkOptsEntry) **uint32
}{
	{unix.SO_PRIORITY, "SO_PRIORITY", func(o *pb.SkOptsEntry) **uint32 { return &o.SoPriority }},
	{unix.SO_RCVLOWAT, "SO_RCVLOWAT", func(o *pb.SkOptsEntry) **uint32 { return &o.SoRcvlowat }},
	{unix.SO_MARK, "SO_MARK", func(o *pb.SkOptsEntry) **uint32 { return &o.SoMark }},
	{unix.SO_OOBINLINE, "SO_OOBINLINE", func(o *pb.SkOptsEntry) **uint32 { return &o.SoOobinline }},
}

// sockLostOpts are SOL_SOCKET options sk_opts_entry has no field for,
// with the value they have on a new socket: a socket with another is
// refused rather than restored without it.
var sockLostOpts = []struct {
	opt   int
	name  string
	value int
}{
	{unix.SO_TIMESTAMP_OLD, "SO_TIMESTAMP", 0},
	{unix.SO_TIMESTAMPNS_OLD, "SO_TIMESTAMPNS", 0},
	{unix.SO_TIMESTAMPING_OLD, "SO_TIMESTAMPING", 0},
	{unix.SO_TIMESTAMP_NEW, "SO_TIMESTAMP_NEW", 0},
	{unix.SO_TIMESTAMPNS_NEW, "SO_TIMESTAMPNS_NEW", 0},
	{unix.SO_LOCK_FILTER, "SO_LOCK_FILTER", 0},
	{unix.SO_PASSPIDFD, "SO_PASSPIDFD", 0},
	{unix.SO_RCVMARK, "SO_RCVMARK", 0},
	{unix.SO_ZEROCOPY, "SO_ZEROCOPY", 0},
	{unix.SO_PASSRIGHTS, "SO_PASSRIGHTS", 1},
}

// notForThisSocket reports whether getsockopt failed because the option
// does not apply to the socket's family or this kernel lacks it: then
// the socket has the option's default.
func notForThisSocket(err error) bool {
	return errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

// DumpSockOpts reads the options common to all sockets of fd, a socket
// cryo holds (a duplicate of the process's). An option the images have
// no field for, set otherwise than a new socket has it, is refused,
// unless the caller keeps it in cryo-sk-extra.img (keptOpts: inet, unix
// and packet sockets do).
func DumpSockOpts(fd int, kept bool) (*pb.SkOptsEntry, error) {
	o := &pb.SkOptsEntry{}
	for _, b := range []struct {
		opt int
		to  *uint32
	}{{unix.SO_SNDBUF, &o.SoSndbuf}, {unix.SO_RCVBUF, &o.SoRcvbuf}} {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, b.opt)
		if err != nil {
			return nil, fmt.Errorf("read buffer size: %w", err)
		}
		*b.to = uint32(v)
	}
	for _, t := range []struct {
		opt       int
		sec, usec *uint64
	}{{unix.SO_SNDTIMEO, &o.SoSndTmoSec, &o.SoSndTmoUsec}, {unix.SO_RCVTIMEO, &o.SoRcvTmoSec, &o.SoRcvTmoUsec}} {
		tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, t.opt)
		if err != nil {
			return nil, fmt.Errorf("read timeout: %w", err)
		}
		*t.sec, *t.usec = uint64(tv.Sec), uint64(tv.Usec)
	}
	for _, b := range sockBoolOpts {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, b.opt)
		if notForThisSocket(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", b.name, err)
		}
		*b.field(o) = pb.Bool(v != 0)
	}
	for _, n := range sockIntOpts {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, n.opt)
		if notForThisSocket(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", n.name, err)
		}
		*n.field(o) = pb.Uint32(uint32(v))
	}
	for _, l := range sockLostOpts {
		if kept && isKeptOpt(0, unix.SOL_SOCKET, l.opt) {
			continue
		}
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, l.opt)
		if notForThisSocket(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", l.name, err)
		}
		if v != l.value {
			return nil, fmt.Errorf("%w: socket option %s is %d (a checkpoint cannot hold it)", ErrUnsupported, l.name, v)
		}
	}
	// A linger of zero seconds, on, is an abortive close: the field
	// holds the seconds and is there only when lingering is on.
	if l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER); err != nil && !notForThisSocket(err) {
		return nil, fmt.Errorf("read SO_LINGER: %w", err)
	} else if err == nil && l.Onoff != 0 {
		o.SoLinger = pb.Uint32(uint32(l.Linger))
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUF_LOCK); err != nil && !notForThisSocket(err) {
		return nil, fmt.Errorf("read SO_BUF_LOCK: %w", err)
	} else if err == nil {
		o.SoBufLock = pb.Uint32(uint32(v))
	}
	if dev, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE); err != nil && !notForThisSocket(err) {
		return nil, fmt.Errorf("read SO_BINDTODEVICE: %w", err)
	} else if err == nil && dev != "" {
		o.SoBoundDev = pb.String(dev)
	}
	filter, err := dumpSockFilter(fd)
	if err != nil {
		return nil, err
	}
	o.SoFilter = filter
	return o, nil
}

// dumpSockFilter reads the classic BPF program attached to the socket
// (SO_ATTACH_FILTER), one sock_filter per fixed64 as CRIU lays it out.
func dumpSockFilter(fd int) ([]uint64, error) {
	n, err := kernel.GetsockoptBytes(fd, unix.SOL_SOCKET, unix.SO_GET_FILTER, nil)
	if notForThisSocket(err) || (err == nil && n == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read socket filter length: %w", err)
	}
	if n > maxSockFilter {
		return nil, fmt.Errorf("%w: socket filter of %d instructions", ErrUnsupported, n)
	}
	buf := make([]byte, n*8)
	if m, err := kernel.GetsockoptBytes(fd, unix.SOL_SOCKET, unix.SO_GET_FILTER, buf); err != nil {
		return nil, fmt.Errorf("read socket filter: %w", err)
	} else if m != n {
		return nil, fmt.Errorf("read socket filter: %d instructions, then %d", n, m)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	return out, nil
}

// RestoreSockOpts sets on fd, a socket cryo holds (a duplicate of the
// process's), the options DumpSockOpts read. The buffer sizes are forced
// (SO_SNDBUFFORCE, past the system's maximum, as they were) and their
// lock, which setting them takes, is set back to what it was after.
func RestoreSockOpts(fd int, o *pb.SkOptsEntry) error {
	if err := RestoreSockBuffers(fd, o); err != nil {
		return err
	}
	return restoreOtherSockOpts(fd, o)
}

// RestoreSockBuffers sets the buffer sizes of sk_opts_entry on fd, a
// socket cryo holds, forced (SO_SNDBUFFORCE) as RestoreSockOpts does; its
// lock (SO_BUF_LOCK) is set back by RestoreSockOpts.
func RestoreSockBuffers(fd int, o *pb.SkOptsEntry) error {
	for _, b := range []struct {
		opt  int
		name string
		v    uint32
		get  int
	}{{unix.SO_SNDBUFFORCE, "SO_SNDBUF", o.GetSoSndbuf(), unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, "SO_RCVBUF", o.GetSoRcvbuf(), unix.SO_RCVBUF}} {
		// A size the socket has already is left alone, and not locked
		// by setting it (a new socket's, which the kernel tunes).
		if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, b.get); err == nil && uint32(cur) == b.v {
			continue
		}
		// getsockopt reports twice what setsockopt is given: the
		// kernel's bookkeeping overhead.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.opt, int(b.v/2)); err != nil {
			return fmt.Errorf("set %s to %d: %w", b.name, b.v, err)
		}
	}
	return nil
}

// restoreOtherSockOpts sets the options of sk_opts_entry but the buffer
// sizes.
func restoreOtherSockOpts(fd int, o *pb.SkOptsEntry) error {
	for _, t := range []struct {
		opt       int
		name      string
		sec, usec uint64
	}{{unix.SO_SNDTIMEO, "SO_SNDTIMEO", o.GetSoSndTmoSec(), o.GetSoSndTmoUsec()}, {unix.SO_RCVTIMEO, "SO_RCVTIMEO", o.GetSoRcvTmoSec(), o.GetSoRcvTmoUsec()}} {
		if t.sec == 0 && t.usec == 0 {
			continue
		}
		tv := unix.Timeval{Sec: int64(t.sec), Usec: int64(t.usec)}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, t.opt, &tv); err != nil {
			return fmt.Errorf("set %s: %w", t.name, err)
		}
	}
	for _, b := range sockBoolOpts {
		v := *b.field(o)
		if v == nil || !*v {
			continue // a new socket has it off
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, b.opt, 1); err != nil {
			return fmt.Errorf("set %s: %w", b.name, err)
		}
	}
	for _, n := range sockIntOpts {
		v := *n.field(o)
		if v == nil {
			continue
		}
		cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, n.opt)
		if err == nil && uint32(cur) == *v {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, n.opt, int(*v)); err != nil {
			return fmt.Errorf("set %s to %d: %w", n.name, *v, err)
		}
	}
	if o.SoLinger != nil {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: int32(o.GetSoLinger())}); err != nil {
			return fmt.Errorf("set SO_LINGER: %w", err)
		}
	}
	if dev := o.GetSoBoundDev(); dev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
			return fmt.Errorf("bind to device %s: %w", dev, err)
		}
	}
	if len(o.SoFilter) > 0 {
		prog := make([]unix.SockFilter, len(o.SoFilter))
		for i, ins := range o.SoFilter {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], ins)
			prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(b[0:]), Jt: b[2], Jf: b[3], K: binary.LittleEndian.Uint32(b[4:])}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			return fmt.Errorf("attach socket filter: %w", err)
		}
	}
	if o.SoBufLock != nil {
		// Set unless it is so already (an MPTCP socket reads it, and
		// refuses to set it).
		if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUF_LOCK); err != nil || uint32(cur) != o.GetSoBufLock() {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUF_LOCK, int(o.GetSoBufLock())); err != nil {
				return fmt.Errorf("set SO_BUF_LOCK: %w", err)
			}
		}
	}
	return nil
}
