package kernel_test

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

func TestInetDiagSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int
	}{
		{"inet_diag_sockid", kernel.InetDiagSockID{}, 48},
		{"inet_diag_req_v2", kernel.InetDiagReqV2{}, 56},
		{"inet_diag_msg", kernel.InetDiagMsg{}, 72},
		{"tcp_repair_window", kernel.TCPRepairWindow{}, 20},
		{"tcp_info up to tcpi_rto", kernel.TCPInfoHead{}, 8},
	} {
		if got := binary.Size(tc.v); got != tc.want {
			t.Errorf("struct %s: %d bytes, want %d", tc.name, got, tc.want)
		}
	}
}

// TestInetDiagDump finds a listener of this process, with its backlog
// and address, and a connection, shut down for writing, with its peer.
func TestInetDiagDump(t *testing.T) {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialTCP("tcp4", nil, l.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	ino := func(f interface{ File() (*os.File, error) }) uint32 {
		t.Helper()
		file, err := f.File()
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(file.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return uint32(st.Ino)
	}
	lino, cino := ino(l), ino(c)
	socks, err := kernel.InetDiagDump(unix.AF_INET, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, s := range socks {
		switch s.Inode {
		case lino:
			found++
			if s.State != 10 || s.Local().String() != l.Addr().String() || s.Wqueue == 0 || s.Rqueue != 1 {
				t.Errorf("listener: state %d, local %v, backlog %d, accept queue %d; want 10 (LISTEN), %v, >0, 1", s.State, s.Local(), s.Wqueue, s.Rqueue, l.Addr())
			}
		case cino:
			found++
			if s.Remote().String() != l.Addr().String() || s.Shutdown != kernel.SendShutdown {
				t.Errorf("connection: remote %v, shutdown %d; want %v, %d", s.Remote(), s.Shutdown, l.Addr(), kernel.SendShutdown)
			}
		}
	}
	if found != 2 {
		t.Fatalf("found %d of the 2 sockets among %d", found, len(socks))
	}
}

func FuzzParseInetDiag(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/inetdiag/*")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(kernel.InetDiagRequest(unix.AF_INET, unix.IPPROTO_TCP, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, err := kernel.ParseInetDiag(b)
		if err == nil {
			for _, s := range socks {
				_, _ = s.Local(), s.Remote()
			}
		}
	})
}
