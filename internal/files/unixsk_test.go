package files

import (
	"errors"
	"testing"

	skpacket "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestPacketExtras records a datagram's sender address and credentials
// in the fields of sk_packet_entry go-criu lacks, through the wire and
// back; corrupt fields are errors.
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
		e := &skpacket.SkPacketEntry{IdFor: proto.Uint32(3), Length: proto.Uint32(0)}
		setPacketExtras(e, tc.addr, tc.cred)
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back := &skpacket.SkPacketEntry{}
		if err := proto.Unmarshal(b, back); err != nil {
			t.Fatal(err)
		}
		addr, cred, err := packetExtras(back)
		if err != nil || !cmp.Equal(addr, tc.addr) || !cmp.Equal(cred, tc.cred) {
			t.Errorf("%q %+v came back as %q %+v, %v", tc.addr, tc.cred, addr, cred, err)
		}
	}
	for _, b := range [][]byte{{0x1a}, {0x1a, 5, 'a'}, {0x82, 0x08, 2, 0x08}, {0x82, 0x08, 2, 0x0a, 0}, {0xff}} {
		if _, _, err := parsePacketExtras(b); !errors.Is(err, ErrImage) {
			t.Errorf("parsePacketExtras(%x): %v, want ErrImage", b, err)
		}
	}
}

func FuzzPacketExtras(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, cred, err := parsePacketExtras(b)
		if err != nil && (addr != nil || cred != nil) {
			t.Fatalf("parsePacketExtras(%x) = %q, %v with %v", b, addr, cred, err)
		}
	})
}
