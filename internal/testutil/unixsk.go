package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// UnixSock is what a test sees of a unix socket of a process, through a
// duplicate of its descriptor: what a restore must give back.
type UnixSock struct {
	Type       int
	Name, Peer string // "" unnamed, "@..." abstract
	// Queue is what is queued to it, peeked: each datagram as
	// "SENDER|DATA" (an abstract SENDER's zero bytes kept), a stream's
	// bytes as one string.
	Queue          []string
	Sndbuf, Rcvbuf int
	Passcred       bool
	// SO_TIMESTAMP, SO_TIMESTAMPNS: what each message read comes with.
	Timestamp, TimestampNS bool
	PeekOff                int // SO_PEEK_OFF
	Flags                  int // status flags
	State, Shutdown        uint8
	Pending, Backlog       uint32 // of a listening socket
}

// UnixSocket returns what descriptor fd of process pid, a unix socket,
// is, without changing it.
func UnixSocket(t testing.TB, pid, fd int) UnixSock {
	t.Helper()
	dup, err := kernel.Getfd(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	var s UnixSock
	if s.Type, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		t.Fatalf("fd %d of pid %d: %v", fd, pid, err)
	}
	if sa, err := unix.Getsockname(dup); err == nil {
		s.Name = sa.(*unix.SockaddrUnix).Name
	}
	if sa, err := unix.Getpeername(dup); err == nil {
		s.Peer = sa.(*unix.SockaddrUnix).Name
	}
	s.Sndbuf, _ = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_SNDBUF)
	s.Rcvbuf, _ = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_RCVBUF)
	pc, _ := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PASSCRED)
	s.Passcred = pc != 0
	ts, _ := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TIMESTAMP)
	tsns, _ := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS)
	s.Timestamp, s.TimestampNS = ts != 0, tsns != 0
	if s.Flags, err = unix.FcntlInt(uintptr(dup), unix.F_GETFL, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(dup, &st); err != nil {
		t.Fatal(err)
	}
	socks, err := kernel.UnixSockets()
	if err != nil {
		t.Fatal(err)
	}
	d := socks[uint32(st.Ino)]
	if d == nil {
		t.Fatalf("fd %d of pid %d: sock_diag does not know inode %d", fd, pid, st.Ino)
	}
	s.State, s.Shutdown = d.State, d.Shutdown
	if d.State == 10 { // TCP_LISTEN
		s.Pending, s.Backlog = d.Rqueue, d.Wqueue
		return s
	}
	if s.PeekOff, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PEEK_OFF); err != nil {
		t.Fatalf("fd %d of pid %d: %v", fd, pid, err)
	}
	if s.Queue, err = peekQueue(dup, s.Type, s.PeekOff); err != nil {
		t.Fatalf("fd %d of pid %d: %v", fd, pid, err)
	}
	return s
}

// peekQueue reads what is queued to socket fd without taking it, its
// peek offset set back to off after.
func peekQueue(fd, typ, off int) ([]string, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, err
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	var out []string
	stream := ""
	buf := make([]byte, 1<<16)
	for range 1000 {
		n, _, _, from, err := kernel.Recvmsg(fd, buf, nil, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINVAL) { // empty, or not connected
			break
		}
		if err != nil {
			return nil, fmt.Errorf("peek: %w", err)
		}
		if typ == unix.SOCK_STREAM {
			if n == 0 {
				break // shut down
			}
			stream += string(buf[:n])
			continue
		}
		// The sender's name whole: "@" and every byte of an abstract
		// one, a path without its ending zero byte.
		sender := strings.TrimRight(string(from), "\x00")
		if len(from) > 0 && from[0] == 0 {
			sender = "@" + string(from[1:])
		}
		out = append(out, sender+"|"+string(buf[:n]))
	}
	if stream != "" {
		out = append(out, stream)
	}
	return out, nil
}

// UnixSocketDup returns a duplicate, in the test, of descriptor fd of
// process pid, closed when the test ends.
func UnixSocketDup(t testing.TB, pid, fd int) int {
	t.Helper()
	dup, err := kernel.Getfd(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(dup) })
	return dup
}
