package files

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// TestPacketCheck checks that a restore validates a packet socket's entry
// before it builds anything: a bad one is a bad checkpoint, one cryo does
// not keep unsupported, one using an interface this machine lacks or names
// otherwise ErrInterface.
func TestPacketCheck(t *testing.T) {
	good := func() *pb.PacketSockEntry {
		return &pb.PacketSockEntry{Id: 1, Type: unix.SOCK_RAW, Protocol: 0xb588, Ifindex: 1, Fown: &pb.FownEntry{}, Opts: &pb.SkOptsEntry{},
			Mclist: []*pb.PacketMclist{{Index: 1, Type: unix.PACKET_MR_PROMISC}}}
	}
	for _, tc := range []struct {
		name   string
		bad    func(e *pb.PacketSockEntry)
		ifaces []image.Iface
		want   error
	}{
		{"good", func(*pb.PacketSockEntry) {}, []image.Iface{{Index: 1, Name: "lo"}}, nil},
		{"no options", func(e *pb.PacketSockEntry) { e.Opts = nil }, nil, ErrImage},
		{"SOCK_PACKET", func(e *pb.PacketSockEntry) { e.Type = unix.SOCK_PACKET }, nil, ErrUnsupported},
		{"protocol", func(e *pb.PacketSockEntry) { e.Protocol = 0x10000 }, nil, ErrImage},
		{"interface index", func(e *pb.PacketSockEntry) { e.Ifindex = 1 << 31 }, nil, ErrImage},
		{"version", func(e *pb.PacketSockEntry) { e.Version = 3 }, nil, ErrImage},
		{"ring", func(e *pb.PacketSockEntry) { e.RxRing = &pb.PacketRing{} }, nil, ErrUnsupported},
		{"fanout type", func(e *pb.PacketSockEntry) { e.Fanout = pb.Uint32(8 << 16) }, nil, ErrImage},
		{"BPF fanout", func(e *pb.PacketSockEntry) { e.Fanout = pb.Uint32(unix.PACKET_FANOUT_EBPF << 16) }, nil, ErrUnsupported},
		{"membership type", func(e *pb.PacketSockEntry) { e.Mclist[0].Type = 4 }, nil, ErrImage},
		{"membership address", func(e *pb.PacketSockEntry) { e.Mclist[0].Addr = make([]byte, 33) }, nil, ErrImage},
		{"membership interface", func(e *pb.PacketSockEntry) { e.Mclist[0].Index = 0 }, nil, ErrImage},
		{"interface not used", func(*pb.PacketSockEntry) {}, []image.Iface{{Index: 7, Name: "eth0"}}, ErrImage},
		{"interface renamed", func(*pb.PacketSockEntry) {}, []image.Iface{{Index: 1, Name: "eth0"}}, ErrInterface},
		// No machine has an interface of index 2^31-1.
		{"interface missing", func(e *pb.PacketSockEntry) { e.Ifindex = 1<<31 - 1 }, nil, ErrInterface},
	} {
		e := good()
		tc.bad(e)
		f := &pb.FileEntry{Type: pb.FdTypes_PACKETSK, Id: 1, Entry: e}
		s := &Set{sockExtraSet: sockExtraSet{sockExtras: map[uint32]image.SockExtra{1: {ID: 1, PeekOff: -1, Ifaces: tc.ifaces}}}}
		err := packetKind{}.check(s, f)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
