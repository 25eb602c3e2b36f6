package files

import (
	"errors"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestSockOpts sets options on a real socket, reads them with
// DumpSockOpts, sets them on a new socket with RestoreSockOpts and reads
// them back: every field comes back as dumped. Options the images cannot
// hold are refused by name.
func TestSockOpts(t *testing.T) {
	bpf := []unix.SockFilter{{Code: 0x06, K: 0xffff}} // ret #0xffff: accept all
	for _, tc := range []struct {
		name string
		set  func(fd int) error
		want func(o *pb.SkOptsEntry) bool // what the dump must have read
		err  string                       // in the refusal
	}{
		{name: "defaults", set: func(int) error { return nil }, want: func(o *pb.SkOptsEntry) bool {
			return o.GetSoSndbuf() > 0 && !o.GetSoPasscred() && o.SoLinger == nil && o.GetSoBufLock() == 0
		}},
		{name: "buffers", set: func(fd int) error {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 40000); err != nil {
				return err
			}
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<22) // past rmem_max
		}, want: func(o *pb.SkOptsEntry) bool {
			return o.GetSoSndbuf() == 80000 && o.GetSoRcvbuf() == 1<<23 && o.GetSoBufLock() == 3
		}},
		{name: "flags", set: func(fd int) error {
			for _, o := range []int{unix.SO_PASSCRED, unix.SO_REUSEADDR, unix.SO_KEEPALIVE} {
				if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
					return err
				}
			}
			return nil
		}, want: func(o *pb.SkOptsEntry) bool { return o.GetSoPasscred() && o.GetReuseaddr() && o.GetSoKeepalive() }},
		{name: "numbers", set: func(fd int) error {
			for _, o := range [][2]int{{unix.SO_PRIORITY, 5}, {unix.SO_MARK, 77}, {unix.SO_RCVLOWAT, 9}} {
				if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], o[1]); err != nil {
					return err
				}
			}
			return nil
		}, want: func(o *pb.SkOptsEntry) bool {
			return o.GetSoPriority() == 5 && o.GetSoMark() == 77 && o.GetSoRcvlowat() == 9
		}},
		{name: "timeouts and linger", set: func(fd int) error {
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3, Usec: 8000}); err != nil {
				return err
			}
			return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		}, want: func(o *pb.SkOptsEntry) bool {
			return o.GetSoRcvTmoSec() == 3 && o.GetSoRcvTmoUsec() == 8000 && o.SoLinger != nil
		}},
		{name: "filter", set: func(fd int) error {
			return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &bpf[0]})
		}, want: func(o *pb.SkOptsEntry) bool { return len(o.SoFilter) == 1 && o.SoFilter[0] == 0xffff_00000006 }},
		{name: "timestamps", set: func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1) }, err: "SO_TIMESTAMP is 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := sockForTest(t)
			if err := tc.set(fd); err != nil {
				t.Fatal(err)
			}
			got, err := DumpSockOpts(fd, false)
			if tc.err != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DumpSockOpts: %v, want %q refused", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(got) {
				t.Fatalf("dumped options: %v", got)
			}
			fresh := sockForTest(t)
			if err := RestoreSockOpts(fresh, got); err != nil {
				t.Fatal(err)
			}
			again, err := DumpSockOpts(fresh, false)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("restored options differ (-dumped +restored):\n%s", diff)
			}
		})
	}
}

func sockForTest(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
