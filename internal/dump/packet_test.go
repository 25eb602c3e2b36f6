package dump_test

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// critPacketSk is crit's JSON of a packet socket entry.
type critPacketSk struct {
	Type, Protocol, Ifindex, Version, Reserve uint32
	AuxData                                   bool `json:"aux_data"`
	OrigDev                                   bool `json:"orig_dev"`
	VnetHdr                                   bool `json:"vnet_hdr"`
	Loss                                      bool
	CopyThresh                                uint32 `json:"copy_thresh"`
	Fanout                                    uint32
	Mclist                                    []struct{ Index, Type uint32 }
}

// TestDumpPacket dumps packet sockets of test/subjects/packet.c, leaving
// it running, and reads them back with crit: type, protocol (in network
// byte order), interface, settings, memberships (the last added first,
// as the kernel lists them) and fanout group as CRIU names them.
func TestDumpPacket(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "packet.c"), "raw", "dgram", "send")
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	crit := critFiles(t, d.dir, "--pretty")
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	const noFanout = 0xffffffff // the field's default
	for _, tc := range []struct {
		name string
		want critPacketSk
	}{
		{"raw", critPacketSk{Type: 3, Protocol: 0xb588, Ifindex: uint32(lo.Index), Version: 1, Reserve: 64, OrigDev: true, Fanout: noFanout,
			Mclist: []struct{ Index, Type uint32 }{{uint32(lo.Index), 1}}}},
		{"dgram", critPacketSk{Type: 2, Protocol: 0xb688, Ifindex: uint32(lo.Index), AuxData: true, Loss: true, CopyThresh: 1, Fanout: uint32(s.Pid&0xffff) | 1<<16 | 0x10<<24,
			Mclist: []struct{ Index, Type uint32 }{{uint32(lo.Index), 2}, {uint32(lo.Index), 0}, {uint32(lo.Index), 0}}}},
		{"send", critPacketSk{Type: 3, VnetHdr: true, Fanout: noFanout}},
	} {
		id := im.file(t, uint32(s.ReadyUint(t, tc.name))).GetId()
		got := crit[id].Psk
		if got == nil {
			t.Errorf("%s: crit shows no packet socket as entry %d", tc.name, id)
			continue
		}
		if got.Fanout == 0 {
			got.Fanout = noFanout // crit leaves the default out
		}
		if diff := cmp.Diff(tc.want, *got); diff != "" {
			t.Errorf("%s: crit's entry (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestDumpPacketRefused dumps packet sockets cryo cannot keep: each is
// refused, named, and the subject runs on.
func TestDumpPacketRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		arg  string
		want []string
	}{
		{"ring", []string{"packet socket", "(SOCK_RAW, ethertype 0x0000, on every interface) has a receive ring (PACKET_RX_RING)"}},
		{"queued", []string{"packet socket", "(SOCK_DGRAM, ethertype 0x88b7, on lo) holds a frame of", "not read yet: a restore cannot give a received frame back"}},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "packet.c"), tc.arg)
			expectRefused(t, s, dump.Options{LeaveRunning: true}, tc.want...)
		})
	}
}
