package kernel_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestPacketDiagSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int
	}{
		{"packet_diag_info", kernel.PacketDiagInfo{}, 24},
		{"packet_diag_mclist", kernel.PacketDiagMclist{}, 44},
		{"packet_diag_ring", kernel.PacketDiagRing{}, 28},
	} {
		if got := binary.Size(tc.v); got != tc.want {
			t.Errorf("struct %s: %d bytes, want %d", tc.name, got, tc.want)
		}
	}
}

// TestPacketDiagDump finds a packet socket of this process bound to the
// loopback interface, with its protocol in network byte order, a
// membership, a ring and a fanout group.
func TestPacketDiagDump(t *testing.T) {
	testutil.RequireRoot(t)
	const proto = 0xb588 // htons(0x88b5), an ethertype for local experiments
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: 1}); err != nil {
		t.Fatal(err)
	}
	mreq := unix.PacketMreq{Ifindex: 1, Type: unix.PACKET_MR_MULTICAST, Alen: 6, Address: [8]uint8{1, 0, 0x5e, 0, 0, 0xfb}}
	for range 2 {
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &unix.TpacketReq{Block_size: 4096, Block_nr: 1, Frame_size: 2048, Frame_nr: 2}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, 0x4321|unix.PACKET_FANOUT_LB<<16); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	socks, err := kernel.PacketDiagDump()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := socks[uint32(st.Ino)]
	switch {
	case !ok:
		t.Fatalf("socket %d not among %d", st.Ino, len(socks))
	case s.Type != unix.SOCK_DGRAM || s.Protocol != proto || s.Info.Index != 1 || s.Info.Flags&kernel.PDIRunning == 0:
		t.Errorf("type %d, protocol %#x, interface %d, flags %#x; want %d, %#x, 1, running", s.Type, s.Protocol, s.Info.Index, s.Info.Flags, unix.SOCK_DGRAM, proto)
	case len(s.Mclist) != 1 || s.Mclist[0].Count != 2 || s.Mclist[0].Alen != 6 || s.Mclist[0].Addr[5] != 0xfb:
		t.Errorf("memberships %+v, want one of 01:00:5e:00:00:fb, twice", s.Mclist)
	case s.RxRing == nil || s.RxRing.FrameNr != 2 || s.TxRing != nil:
		t.Errorf("rings %+v %+v, want a receive ring of 2 frames", s.RxRing, s.TxRing)
	case s.Fanout == nil || *s.Fanout != 0x4321|unix.PACKET_FANOUT_LB<<16:
		t.Errorf("fanout %v, want %#x", s.Fanout, 0x4321|unix.PACKET_FANOUT_LB<<16)
	}
}

// TestParsePacketDiagCorrupt cuts and corrupts a reply: each is an error.
func TestParsePacketDiagCorrupt(t *testing.T) {
	seed, err := os.ReadFile("testdata/packetdiag/ring-mclist-fanout.bin")
	if err != nil {
		t.Fatal(err)
	}
	if socks, _, err := kernel.ParsePacketDiag(seed); err != nil || len(socks) != 1 {
		t.Fatalf("seed: %d sockets, %v", len(socks), err)
	}
	for n := 1; n < len(seed); n++ {
		if _, _, err := kernel.ParsePacketDiag(seed[:n]); err == nil {
			t.Errorf("cut at %d bytes: no error", n)
		}
	}
	// The info attribute's length (after the netlink header and the
	// packet_diag_msg) one short of packet_diag_info.
	b := append([]byte{}, seed...)
	binary.NativeEndian.PutUint16(b[16+16:], 4+23)
	if _, _, err := kernel.ParsePacketDiag(b); !errors.Is(err, kernel.ErrNetlink) {
		t.Errorf("short packet_diag_info: %v, want ErrNetlink", err)
	}
}

func FuzzParsePacketDiag(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/packetdiag/*")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(kernel.PacketDiagRequest(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, err := kernel.ParsePacketDiag(b)
		if err != nil && socks != nil {
			t.Fatalf("ParsePacketDiag returned sockets with %v", err)
		}
	})
}
