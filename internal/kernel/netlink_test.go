package kernel_test

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// nlMessage is a netlink message of type typ and flags holding body.
func nlMessage(typ, flags uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(16+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nlAttr is a netlink attribute of type typ holding v, padded.
func nlAttr(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nlError is an NLMSG_ERROR message answering the request of seq with
// errno (negative, or 0) and its header, as NETLINK_CAP_ACK has it.
func nlError(seq uint32, errno int32) []byte {
	body := binary.NativeEndian.AppendUint32(nil, uint32(errno))
	return nlMessage(unix.NLMSG_ERROR, 0x100, seq, append(body, nlMessage(0xa00, unix.NLM_F_REQUEST, seq, nil)...))
}

func TestParseNlAcks(t *testing.T) {
	// A batch of a table made, a chain of a table that does not exist
	// and a table owned by another socket deleted.
	real, err := os.ReadFile("testdata/nftables/acks.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		b       []byte
		want    []kernel.NlAck
		wantErr error
	}{
		{name: "this kernel's", b: real, want: []kernel.NlAck{{2, 0}, {3, unix.ENOENT}, {4, unix.EPERM}}},
		{name: "none", b: nil},
		{name: "an error", b: nlError(7, -int32(unix.EEXIST)), want: []kernel.NlAck{{7, unix.EEXIST}}},
		{name: "header cut", b: real[:15], wantErr: kernel.ErrNetlink},
		{name: "longer than the read", b: real[:30], wantErr: kernel.ErrNetlink},
		{name: "error cut", b: nlMessage(unix.NLMSG_ERROR, 0, 1, make([]byte, 19)), wantErr: kernel.ErrNetlink},
		{name: "positive error", b: nlError(1, 1), wantErr: kernel.ErrNetlink},
		{name: "beyond MAX_ERRNO", b: nlError(1, -4096), wantErr: kernel.ErrNetlink},
		{name: "another type", b: nlMessage(unix.NLMSG_DONE, 0, 1, make([]byte, 4)), wantErr: kernel.ErrNetlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kernel.ParseNlAcks(tc.b)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("ParseNlAcks: %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseNlAcks (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzNlAcks(f *testing.F) {
	real, err := os.ReadFile("testdata/nftables/acks.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Fuzz(func(t *testing.T, b []byte) {
		acks, err := kernel.ParseNlAcks(b)
		if err != nil && acks != nil {
			t.Fatalf("ParseNlAcks returned acknowledgements with %v", err)
		}
		for _, a := range acks {
			if a.Errno > 4095 {
				t.Fatalf("errno %d", a.Errno)
			}
		}
	})
}

// attr is an attribute as ParseNlAttrs gives it.
type attr struct {
	Type  uint16
	Value string
}

func parseAttrs(b []byte) ([]attr, error) {
	var attrs []attr
	err := kernel.ParseNlAttrs(b, func(typ uint16, v []byte) error {
		attrs = append(attrs, attr{typ, string(v)})
		return nil
	})
	return attrs, err
}

func TestParseNlAttrs(t *testing.T) {
	two := append(nlAttr(1, []byte("abcde")), nlAttr(2|unix.NLA_F_NESTED, nlAttr(3, nil))...)
	for _, tc := range []struct {
		name    string
		b       []byte
		want    []attr
		wantErr error
	}{
		{name: "none", b: nil},
		{name: "two, one nested", b: two, want: []attr{{1, "abcde"}, {2, "\x04\x00\x03\x00"}}},
		{name: "last unpadded", b: two[:9], want: []attr{{1, "abcde"}}},
		{name: "second cut", b: two[:len(two)-3], want: []attr{{1, "abcde"}}, wantErr: kernel.ErrNetlink},
		{name: "network byte order flag", b: nlAttr(5|unix.NLA_F_NET_BYTEORDER, []byte{0, 1}), want: []attr{{5, "\x00\x01"}}},
		{name: "header cut", b: two[:3], wantErr: kernel.ErrNetlink},
		{name: "longer than the list", b: two[:8], wantErr: kernel.ErrNetlink},
		{name: "shorter than a header", b: []byte{3, 0, 1, 0}, wantErr: kernel.ErrNetlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAttrs(tc.b)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("ParseNlAttrs: %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseNlAttrs (-want +got):\n%s", diff)
			}
		})
	}
	stop := errors.New("stop")
	calls := 0
	if err := kernel.ParseNlAttrs(two, func(uint16, []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("ParseNlAttrs with fn failing: %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func FuzzNlAttrs(f *testing.F) {
	real, err := os.ReadFile("testdata/nftables/gettable-inet.bin")
	if err != nil {
		f.Fatal(err)
	}
	// The attributes of the first table: after the headers of the
	// message and of nfnetlink, to the message's end.
	f.Add(real[20:binary.NativeEndian.Uint32(real)])
	f.Add(append(nlAttr(1, []byte("abcde")), nlAttr(2|unix.NLA_F_NESTED, nlAttr(3, nil))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := kernel.ParseNlAttrs(b, func(_ uint16, v []byte) error {
			n += 4 + len(v)
			return nil
		})
		if err == nil && n > len(b) {
			t.Fatalf("attributes of %d bytes in %d", n, len(b))
		}
	})
}
