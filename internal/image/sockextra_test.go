package image

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

func TestSockExtras(t *testing.T) {
	d, err := Create(t.TempDir() + "/images")
	if err != nil {
		t.Fatal(err)
	}
	want := []SockExtra{
		{ID: 7, PeekOff: 3},
		{ID: 9, PeekOff: -1, Groups: []McastGroup{{1, netip.MustParseAddr("239.7.7.7")}, {2, netip.MustParseAddr("ff15::777")}}},
		{ID: 11, PeekOff: -1, TCPFastOpen: 5, TCPDeferAccept: 15, TCPUserTimeout: 30000},
		{ID: 13, PeekOff: -1, Ifaces: []Iface{{1, "lo"}, {3, "eth0"}}},
	}
	if err := d.WriteSockExtras(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.ReadSockExtras()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("read back (-written +read):\n%s", diff)
	}
	for _, bad := range []func(m *pb.SkExtraEntry){
		func(m *pb.SkExtraEntry) { m.PeekOff = -2 },
		func(m *pb.SkExtraEntry) { m.McastIfindex = append(m.McastIfindex, 1) },
		func(m *pb.SkExtraEntry) {
			m.McastIfindex, m.McastGroup = append(m.McastIfindex, 1), append(m.McastGroup, []byte{10, 0, 0, 1})
		},
		func(m *pb.SkExtraEntry) {
			m.McastIfindex, m.McastGroup = append(m.McastIfindex, 1), append(m.McastGroup, []byte{239, 0, 0})
		},
		func(m *pb.SkExtraEntry) { m.IfIndex = append(m.IfIndex, 1) },
		func(m *pb.SkExtraEntry) { m.IfIndex, m.IfName = append(m.IfIndex, 0), append(m.IfName, "lo") },
		func(m *pb.SkExtraEntry) { m.IfIndex, m.IfName = append(m.IfIndex, 1), append(m.IfName, "") },
		func(m *pb.SkExtraEntry) { m.IfIndex, m.IfName = append(m.IfIndex, 1), append(m.IfName, "a/b") },
		func(m *pb.SkExtraEntry) {
			m.IfIndex, m.IfName = append(m.IfIndex, 1), append(m.IfName, "sixteen-bytes-xx")
		},
	} {
		m := SockExtra{ID: 1, PeekOff: -1}.message()
		bad(m)
		if s, err := sockExtraOf(m); !errors.Is(err, ErrRecord) {
			t.Errorf("a bad record read as %+v, %v; want ErrRecord", s, err)
		}
	}
}
