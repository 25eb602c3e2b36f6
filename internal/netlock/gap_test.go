package netlock

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestNoGap sends TCP segments of a locked connection as fast as it can,
// each numbered in its sequence field, while locks are taken, kept and
// released, and watches the loopback device, past the output hook: no
// segment sent from the end of Take to the start of Release leaves, in
// particular none while Keep swaps the tables.
func TestNoGap(t *testing.T) {
	testutil.RequireRoot(t)
	const sport, dport = 9, 13 // discard and daytime: nothing listens
	lo := netip.MustParseAddr("127.0.0.1")
	conns := []Conn{{netip.AddrPortFrom(lo, sport), netip.AddrPortFrom(lo, dport)}}

	capture := captureLoopback(t)
	var seq atomic.Uint32 // the number of the next segment
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendSegments(t, stop, &seq, sport, dport)
	}()

	type window struct{ from, to uint32 } // segments that must not leave
	var locked []window
	for range 30 {
		id := testID(t)
		l := take(t, id, conns)
		// A segment being sent when Take returns may have passed.
		from := seq.Load() + 1
		time.Sleep(5 * time.Millisecond)
		if err := l.Keep(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		to := seq.Load()
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		locked = append(locked, window{from, to})
		time.Sleep(2 * time.Millisecond)
	}
	seen := capture(sport, dport)
	passed := 0
	for _, n := range seen {
		leaked := false
		for _, w := range locked {
			if n >= w.from && n < w.to {
				t.Errorf("segment %d left while locked (%d to %d)", n, w.from, w.to)
				leaked = true
			}
		}
		if !leaked {
			passed++
		}
	}
	if passed == 0 {
		t.Fatalf("no segment seen unlocked (%d seen, %d sent): the capture does not work", len(seen), seq.Load())
	}
	t.Logf("%d segments sent, %d seen on lo, %d locked windows", seq.Load(), len(seen), len(locked))
}

// sendSegments sends TCP segments from 127.0.0.1:sport to
// 127.0.0.1:dport through a raw socket until stop, numbering them in their
// sequence field from seq. They carry RST, to which nothing answers.
func sendSegments(t *testing.T, stop <-chan struct{}, seq *atomic.Uint32, sport, dport uint16) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Errorf("raw socket: %v", err)
		return
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	seg[12] = 5 << 4 // data offset: 5 words
	seg[13] = 0x04   // RST
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := seq.Load()
		binary.BigEndian.PutUint32(seg[4:], n)
		// EPERM is the output hook's drop.
		if err := unix.Sendto(fd, seg, 0, to); err != nil && !errors.Is(err, unix.EPERM) {
			t.Errorf("send segment %d: %v", n, err)
			return
		}
		seq.Add(1)
	}
}

// captureLoopback starts reading the IPv4 packets of the loopback device;
// the function it returns stops and returns the sequence numbers of the
// TCP segments from sport to dport seen.
func captureLoopback(t *testing.T) func(sport, dport uint16) []uint32 {
	t.Helper()
	const ethPIP = unix.ETH_P_IP<<8&0xff00 | unix.ETH_P_IP>>8 // in network order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, ethPIP)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: ethPIP, Ifindex: lo.Index})
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	}
	if err == nil {
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	}
	if err != nil {
		unix.Close(fd)
		t.Fatalf("packet socket on lo: %v", err)
	}
	var (
		stopped atomic.Bool
		done    = make(chan struct{})
		pkts    [][]byte
	)
	go func() {
		defer close(done)
		buf := make([]byte, 128)
		for !stopped.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // the timeout, to look at stopped
			}
			pkts = append(pkts, append([]byte(nil), buf[:n]...))
		}
	}()
	stop := func() {
		if !stopped.Swap(true) {
			<-done
			unix.Close(fd)
		}
	}
	t.Cleanup(stop)
	return func(sport, dport uint16) []uint32 {
		stop()
		var seqs []uint32
		for _, p := range pkts {
			if len(p) < 20 || p[9] != unix.IPPROTO_TCP {
				continue
			}
			tcp := p[int(p[0]&0xf)*4:]
			if len(tcp) >= 8 && binary.BigEndian.Uint16(tcp) == sport && binary.BigEndian.Uint16(tcp[2:]) == dport {
				seqs = append(seqs, binary.BigEndian.Uint32(tcp[4:]))
			}
		}
		return seqs
	}
}
