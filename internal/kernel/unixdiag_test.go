package kernel_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// TestUnixSockets makes unix sockets of every shape and asks sock_diag
// about them: names, peers, pending connections, queues and shutdown
// are what the kernel holds.
func TestUnixSockets(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	if _, err := unix.Write(pair[0], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Shutdown(pair[1], unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sock")
	lis := sock(t, unix.SOCK_STREAM)
	if err := unix.Bind(lis, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lis, 7); err != nil {
		t.Fatal(err)
	}
	cli := sock(t, unix.SOCK_STREAM)
	if err := unix.Connect(cli, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	abs := sock(t, unix.SOCK_DGRAM)
	if err := unix.Bind(abs, &unix.SockaddrUnix{Name: "@cryo-diag-test"}); err != nil {
		t.Fatal(err)
	}
	socks, err := kernel.UnixSockets()
	if err != nil {
		t.Fatal(err)
	}
	get := func(fd int) *kernel.UnixSock {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		s := socks[uint32(st.Ino)]
		if s == nil {
			t.Fatalf("fd %d (inode %d) not reported", fd, st.Ino)
		}
		return s
	}
	a, b, l, c := get(pair[0]), get(pair[1]), get(lis), get(cli)
	var fst unix.Stat_t
	if err := unix.Stat(path, &fst); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"pair peers", [2]uint32{a.Peer, b.Peer}, [2]uint32{b.Ino, a.Ino}},
		{"pair queues", [2]uint32{a.Rqueue, b.Rqueue}, [2]uint32{0, 5}},
		{"pair shutdown", [2]uint8{a.Shutdown, b.Shutdown}, [2]uint8{1, 2}},
		{"pair type", a.Type, uint8(unix.SOCK_SEQPACKET)},
		{"listener", [3]any{l.State, string(l.Name), l.Wqueue}, [3]any{uint8(10), path + "\x00", uint32(7)}},
		{"listener file", l.VFS.Ino, uint32(fst.Ino)},
		{"pending", len(l.Icons), 1},
		{"pending connection's client", l.Icons[0], c.Ino},
		{"client's peer, not accepted, has no inode", c.Peer, uint32(0)},
		{"abstract", get(abs).Name, append([]byte{0}, "cryo-diag-test"...)},
		{"unnamed", c.Name, []byte(nil)},
	} {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func sock(t *testing.T, typ int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestParseUnixDiag feeds corrupt replies: each is an error, none a
// crash; the seed reply parses.
func TestParseUnixDiag(t *testing.T) {
	seed, err := os.ReadFile("testdata/unixdiag-reply.bin")
	if err != nil {
		t.Fatal(err)
	}
	socks, done, err := kernel.ParseUnixDiag(seed)
	if err != nil || !done || len(socks) != 2 || socks[0].Peer != socks[1].Ino || string(socks[1].Name) != "/run/x.sock" {
		t.Fatalf("seed: %v, %v, %v", socks, done, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short header", seed[:10]},
		{"cut message", seed[:40]},
		{"length past end", append([]byte{0xff, 0xff, 0, 0}, seed[4:]...)},
		{"attribute past end", func() []byte {
			b := append([]byte{}, seed...)
			binary.LittleEndian.PutUint16(b[16+16:], 200)
			return b
		}()},
	} {
		if _, _, err := kernel.ParseUnixDiag(tc.b); !errors.Is(err, kernel.ErrNetlink) {
			t.Errorf("%s: %v, want ErrNetlink", tc.name, err)
		}
	}
}

func FuzzUnixDiag(f *testing.F) {
	seed, err := os.ReadFile("testdata/unixdiag-reply.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, err := kernel.ParseUnixDiag(b)
		if err != nil && socks != nil {
			t.Fatalf("ParseUnixDiag returned sockets with %v", err)
		}
	})
}
