package files

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestDatagramSender reads back the senders dumpDatagrams records, and
// refuses what it cannot have written.
func TestDatagramSender(t *testing.T) {
	for _, want := range []string{"127.0.0.2:5353", "[::1]:9", "[::ffff:10.0.0.1]:65535"} {
		ap := netip.MustParseAddrPort(want)
		got, err := datagramSender(binary.BigEndian.AppendUint16(ap.Addr().AsSlice(), ap.Port()))
		if err != nil || got != ap {
			t.Errorf("%s: read back %v, %v", want, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2}, make([]byte, 5), make([]byte, 17), make([]byte, 19)} {
		if got, err := datagramSender(bad); err == nil {
			t.Errorf("%d bytes: read %v, want an error", len(bad), got)
		}
	}
}

func FuzzDatagramSender(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1, 0, 53})
	f.Add(make([]byte, 18))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ap, err := datagramSender(b); err == nil && len(b) != len(ap.Addr().AsSlice())+2 {
			t.Fatalf("%d bytes read as %v", len(b), ap)
		}
	})
}
