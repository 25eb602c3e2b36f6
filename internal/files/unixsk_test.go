package files

import (
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"
)

// TestPacketExtras records a datagram's sender address and credentials
// in the fields of sk_packet_entry CRIU reserves, through the wire and
// back.
func TestPacketExtras(t *testing.T) {
	for _, tc := range []struct {
		addr []byte
		cred *unix.Ucred
	}{
		{nil, nil},
		{[]byte("/run/x.sock\x00"), nil},
		{[]byte("\x00abstract"), &unix.Ucred{Pid: 4242, Uid: 1000, Gid: 100}},
		{nil, &unix.Ucred{}},
	} {
		e := &pb.SkPacketEntry{IdFor: 3, Length: 0}
		setPacketExtras(e, tc.addr, tc.cred)
		b, err := pb.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back := &pb.SkPacketEntry{}
		if err := pb.Unmarshal(b, back); err != nil {
			t.Fatal(err)
		}
		addr, cred := packetExtras(back)
		if !cmp.Equal(addr, tc.addr, cmpopts.EquateEmpty()) || !cmp.Equal(cred, tc.cred) {
			t.Errorf("%q %+v came back as %q %+v", tc.addr, tc.cred, addr, cred)
		}
	}
}
