package restore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/netlock"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// startInet starts test/subjects/inet.c with sockets args.
func startInet(t *testing.T, args ...string) *subject {
	t.Helper()
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "inet.c"), args...)}
	testutil.KillPidsAtCleanup(t, s.Pid)
	return s
}

// sockOpts reads options of descriptor fd of process pid through a
// duplicate.
func sockOpts(t *testing.T, pid, fd int, opts [][2]int) []int {
	t.Helper()
	dup, err := kernel.Getfd(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	var out []int
	for _, o := range opts {
		v, err := unix.GetsockoptInt(dup, o[0], o[1])
		if err != nil {
			t.Fatalf("getsockopt %d/%d of fd %d: %v", o[0], o[1], fd, err)
		}
		out = append(out, v)
	}
	return out
}

// diagOf is what sock_diag says of descriptor fd of process pid.
func diagOf(t *testing.T, pid, fd int, family uint8, protocol uint32) kernel.InetDiag {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), &st); err != nil {
		t.Fatal(err)
	}
	socks, err := kernel.InetDiagDump(family, protocol)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Inode == uint32(st.Ino) {
			return s
		}
	}
	t.Fatalf("fd %d of pid %d: sock_diag does not know socket %d", fd, pid, st.Ino)
	return kernel.InetDiag{}
}

// unlockKeptAtCleanup removes, when the test ends, the network locks of
// TCP connections (ids tcp-...) that dumps kept during it and no restore
// removed: a restore failed.
func unlockKeptAtCleanup(t *testing.T) {
	t.Helper()
	before, err := netlock.Locks()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, _ := netlock.Locks()
		for _, id := range after {
			if strings.HasPrefix(id, "tcp-") && !slices.Contains(before, id) {
				netlock.Unlock(id)
			}
		}
	})
}

// listenerOpts are what the inet subject sets on its listeners.
var listenerOpts = [][2]int{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.IPPROTO_TCP, unix.TCP_NODELAY}, {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	{unix.IPPROTO_TCP, unix.TCP_FASTOPEN},
}

// TestRestoreInet restores TCP listeners and bound UDP sockets, IPv4 and
// IPv6: each listener is on its address and port again, with its
// backlog and options, and the subject accepts a new connection on it;
// each UDP socket answers a datagram sent after the restore.
func TestRestoreInet(t *testing.T) {
	testutil.RequireRoot(t)
	s := startInet(t, "listen4", "listen6", "mlisten4", "mlisten6", "udp4", "udp6")
	type sock struct {
		name     string
		family   uint8
		protocol uint32
		addr     string
	}
	socks := []sock{
		{"listen4", unix.AF_INET, unix.IPPROTO_TCP, "127.0.0.1"},
		{"listen6", unix.AF_INET6, unix.IPPROTO_TCP, "::1"},
		{"mlisten4", unix.AF_INET, unix.IPPROTO_MPTCP, "127.0.0.1"},
		{"mlisten6", unix.AF_INET6, unix.IPPROTO_MPTCP, "::1"},
		{"udp4", unix.AF_INET, unix.IPPROTO_UDP, "127.0.0.1"},
		{"udp6", unix.AF_INET6, unix.IPPROTO_UDP, "::1"},
	}
	before := map[string]kernel.InetDiag{}
	for _, k := range socks {
		before[k.name] = diagOf(t, s.Pid, int(s.ReadyUint(t, k.name)), k.family, k.protocol)
	}
	c := dumpAndReap(t, s)
	dumped := dumpedFiles(t, c)
	for _, k := range socks {
		f := dumped[int(s.ReadyUint(t, k.name))]
		if f.GetType() != pb.FdTypes_INETSK || f.GetIsk().GetSrcPort() != uint32(s.ReadyUint(t, k.name+"_port")) {
			t.Errorf("%s: dumped as %v", k.name, f)
		}
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	for _, k := range socks {
		fd := int(s.ReadyUint(t, k.name))
		after := diagOf(t, s.Pid, fd, k.family, k.protocol)
		b := before[k.name]
		if after.State != b.State || after.Local() != b.Local() || (k.protocol != unix.IPPROTO_UDP && after.Wqueue != b.Wqueue) {
			t.Errorf("%s: state %d on %v, backlog %d; before the dump state %d on %v, backlog %d",
				k.name, after.State, after.Local(), after.Wqueue, b.State, b.Local(), b.Wqueue)
		}
	}
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"listen4", "listen6", "mlisten4", "mlisten6"} {
		want := []int{1, 1, 1, 77, 11, 5, 5}
		if got := sockOpts(t, s.Pid, int(s.ReadyUint(t, name)), listenerOpts); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: options %v, want %v", name, got, want)
		}
	}
	if got := sockOpts(t, s.Pid, int(s.ReadyUint(t, "listen6")), [][2]int{{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}}); got[0] != 1 {
		t.Errorf("listen6: IPV6_V6ONLY %d, want 1", got[0])
	}
	for _, k := range socks[:4] {
		port := s.Ready[k.name+"_port"]
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(k.addr, port), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if line != "hello "+port+"\n" {
			t.Errorf("%s: the restored listener's connection says %q, %v; want hello %s", k.name, line, err, port)
		}
	}
	for _, k := range socks[4:] {
		port, _ := strconv.Atoi(s.Ready[k.name+"_port"])
		conn, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(k.addr), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		msg := "after " + k.name
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := conn.Read(buf)
		conn.Close()
		if got := string(buf[:max(n, 0)]); got != "echo:"+msg {
			t.Errorf("%s answers %q, %v; want echo:%s", k.name, got, err, msg)
		}
	}
	if strings.Contains(s.Output(), "FAIL") {
		t.Errorf("subject failed:\n%s", s.Output())
	}
}

// TestRestoreInetBindings restores TCP and UDP sockets never bound, which
// sock_diag does not list: each comes back of its family and type, not
// bound, with its options (SO_LINGER, TCP_NODELAY) and its shutdown
// state (a UDP socket shut down for reading), which the subject checks
// every tick; and UDP sockets bound to an address not local with
// IP_FREEBIND, turned off since, which come back bound there, without
// it; and two TCP listeners bound to one port with SO_REUSEPORT, which
// the first turned off since, which come back so.
func TestRestoreInetBindings(t *testing.T) {
	testutil.RequireRoot(t)
	names := []string{"new4", "new6", "unew4", "unew6"}
	s := startInet(t, append(names, "ufree4", "ufree6", "reuse4")...)
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	dumped := dumpedFiles(t, c)
	for _, name := range names {
		e := dumped[int(s.ReadyUint(t, name))].GetIsk()
		if e == nil || e.GetState() != 7 || e.GetSrcPort() != 0 {
			t.Errorf("%s: dumped as %v, want a socket in state 7 (CLOSE) of no port", name, e)
		}
		if strings.HasPrefix(name, "unew") && e.GetShutdown() != pb.SkShutdown_READ {
			t.Errorf("%s: dumped shut down %v, want READ", name, e.GetShutdown())
		}
	}
	restoreSubject(t, s, c, restore.Options{})
	// Serving, the subject checks each socket's binding, options and
	// shutdown state every tick.
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, 5)
	for _, name := range names {
		dup, err := kernel.Getfd(s.Pid, int(s.ReadyUint(t, name)))
		if err != nil {
			t.Fatal(err)
		}
		family, _ := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, _ := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TYPE)
		unix.Close(dup)
		wantFamily, wantType := unix.AF_INET, unix.SOCK_STREAM
		if strings.HasSuffix(name, "6") {
			wantFamily = unix.AF_INET6
		}
		if strings.HasPrefix(name, "unew") {
			wantType = unix.SOCK_DGRAM
		}
		if family != wantFamily || typ != wantType {
			t.Errorf("%s: family %d type %d, want %d %d", name, family, typ, wantFamily, wantType)
		}
	}
	if strings.Contains(s.Output(), "FAIL") {
		t.Errorf("subject failed:\n%s", s.Output())
	}
}

// TestRestoreTCPEstablished dumps the inet subject connected to a peer
// the test holds, outside the checkpoint, with data queued both ways:
// the subject's send queue holds what the peer, which does not read,
// has no room for, and its receive queue what the peer sent. The test
// sends more while the connection is locked. Once restored (or let run
// on), the peer reads every byte the subject wrote, in order, and the
// subject echoes every byte the peer sent, with no reset. A dump that
// kills the subject keeps the lock until the restore, which removes it;
// one that lets it run removes it at once.
func TestRestoreTCPEstablished(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name, network, addr string
		// suffix is added to the subject's argument.
		suffix       string
		leaveRunning bool
		// tcpClose restores the connection closed.
		tcpClose bool
		// failAt fails the dump at that step: the connection goes on.
		failAt string
		// failRestoreAt fails a first restore at that step, after the
		// connection is made: the next restore brings it back.
		failRestoreAt string
	}{
		{name: "ipv4", network: "tcp4", addr: "127.0.0.1"},
		{name: "ipv6", network: "tcp6", addr: "::1"},
		{name: "ipv4 leave running", network: "tcp4", addr: "127.0.0.1", leaveRunning: true},
		{name: "tcp-close", network: "tcp4", addr: "127.0.0.1", tcpClose: true},
		{name: "dump failed in repair mode", network: "tcp4", addr: "127.0.0.1", failAt: "pages"},
		{name: "restore failed, then done", network: "tcp6", addr: "::1", failRestoreAt: "resume"},
		{name: "dump failed at the end", network: "tcp6", addr: "::1", failAt: "sync"},
		{name: "peek offset", network: "tcp4", addr: "127.0.0.1", suffix: ":peek"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unlockKeptAtCleanup(t)
			locksBefore, err := netlock.Locks()
			if err != nil {
				t.Fatal(err)
			}
			// A small receive buffer, which the accepted connection
			// inherits, leaves most of what the subject writes queued
			// in the subject.
			lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<10) })
				return errors.Join(err, serr)
			}}
			l, err := lc.Listen(context.Background(), tc.network, net.JoinHostPort(tc.addr, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			name := tc.network
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			s := startInet(t, name+":"+port+tc.suffix)
			peer, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			sent := int(s.ReadyUint(t, name+"_sent"))
			if _, err := peer.Write([]byte("before|")); err != nil {
				t.Fatal(err)
			}
			s.WaitTicks(t, 2)
			want := "before|"
			switch {
			case tc.failAt != "":
				_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), FailAt: tc.failAt})
				if !errors.Is(err, dump.ErrInjected) {
					t.Fatalf("dump failing at %s: %v", tc.failAt, err)
				}
			case tc.leaveRunning:
				if _, err := dumpLeaveRunning(s.Pid, filepath.Join(t.TempDir(), "images")); err != nil {
					t.Fatal(err)
				}
			default:
				c := dumpAndReap(t, s)
				dumped := dumpedFiles(t, c)
				e := dumped[int(s.ReadyUint(t, name))].GetIsk()
				var st pb.TcpStreamEntry
				r, err := c.im.dir.Open(image.TCPStream, e.GetIno())
				if err != nil {
					t.Fatal(err)
				}
				err = r.Next(&st)
				r.Close()
				if err != nil {
					t.Fatal(err)
				}
				if e.GetState() != 1 || st.GetInqLen() != uint32(len("before|")) || st.GetOutqLen() == 0 {
					t.Errorf("dumped connection in state %d, receive queue %d bytes, send queue %d; want 1 (ESTABLISHED), %d, some",
						e.GetState(), st.GetInqLen(), st.GetOutqLen(), len("before|"))
				}
				kept, err := netlock.Locks()
				if err != nil {
					t.Fatal(err)
				}
				if len(kept) != len(locksBefore)+1 {
					t.Errorf("locks kept by the dump: %v, before it %v; want one more", kept, locksBefore)
				}

				// Dropped by the lock, retransmitted once it goes.
				if _, err := peer.Write([]byte("locked|")); err != nil {
					t.Fatal(err)
				}
				want += "locked|"
				if tc.failRestoreAt != "" {
					_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, FailAt: tc.failRestoreAt})
					if !errors.Is(err, restore.ErrInjected) {
						t.Fatalf("restore failing at %s: %v", tc.failRestoreAt, err)
					}
					if err := testutil.WaitPidsFree(s.Pid); err != nil {
						t.Fatal(err)
					}
				}
				restoreSubject(t, s, c, restore.Options{TCPClose: tc.tcpClose})
				if tc.suffix == ":peek" {
					if off := sockOpts(t, s.Pid, int(s.ReadyUint(t, name)), [][2]int{{unix.SOL_SOCKET, unix.SO_PEEK_OFF}})[0]; off != 3 {
						t.Errorf("restored peek offset %d, want 3", off)
					}
				}
			}
			if locks, err := netlock.Locks(); err != nil || len(locks) != len(locksBefore) {
				t.Errorf("locks after: %v, %v; want %v", locks, err, locksBefore)
			}
			if tc.tcpClose {
				// A connection closed both ways: reads at its end
				// find the end of the stream, writes EPIPE; the peer's
				// next segment is answered with a reset.
				dup, err := kernel.Getfd(s.Pid, int(s.ReadyUint(t, name)))
				if err != nil {
					t.Fatal(err)
				}
				info, err := kernel.GetTCPInfoHead(dup)
				if err != nil || info.State != 7 {
					t.Errorf("restored with TCPClose: state %d, %v; want 7 (CLOSE)", info.State, err)
				}
				if n, _, err := unix.Recvfrom(dup, make([]byte, 1), unix.MSG_DONTWAIT|unix.MSG_PEEK); n != 0 || err != nil {
					t.Errorf("restored with TCPClose: a read returns %d, %v; want 0 (the end of the stream)", n, err)
				}
				if err := unix.Sendto(dup, []byte("x"), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil); !errors.Is(err, unix.EPIPE) {
					t.Errorf("restored with TCPClose: a write returns %v, want EPIPE", err)
				}
				unix.Close(dup)
				peer.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.ReadAll(peer); !errors.Is(err, unix.ECONNRESET) {
					t.Errorf("the peer of a connection restored closed reads to %v, want a reset", err)
				}
				return
			}
			peer.SetDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, sent)
			if _, err := io.ReadFull(peer, buf); err != nil {
				t.Fatalf("read the %d bytes the subject wrote: %v", sent, err)
			}
			for i, b := range buf {
				if b != byte(i%251) {
					t.Fatalf("byte %d of what the subject wrote is %d, want %d", i, b, i%251)
				}
			}
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.Write([]byte("after|")); err != nil {
				t.Fatal(err)
			}
			want += "after|"
			var got strings.Builder
			for got.Len() < len(want) {
				n, err := peer.Read(buf)
				if err != nil {
					t.Fatalf("read the echoes: %v after %q", err, got.String())
				}
				got.WriteString(strings.ReplaceAll(string(buf[:n]), "echo:", ""))
			}
			if got.String() != want {
				t.Errorf("the subject echoed %q, want %q", got.String(), want)
			}
			if strings.Contains(s.Output(), "FAIL") {
				t.Errorf("subject failed:\n%s", s.Output())
			}
		})
	}
}

// TestRestoreUDPQueued dumps UDP sockets, IPv4 and IPv6, bound and
// connected, with datagrams queued to them from several senders, and
// restores them: the subject reads the same datagrams in the same order
// and answers each to its sender, which gets the answer.
func TestRestoreUDPQueued(t *testing.T) {
	testutil.RequireRoot(t)
	type sender struct {
		sock *net.UDPConn
		msgs []string
	}
	listen := func(network, addr string) *net.UDPConn {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// The connected sockets' peers.
	peer4, peer6 := listen("udp4", "127.0.0.1"), listen("udp6", "::1")
	s := startInet(t, "udp4", "udp6",
		fmt.Sprintf("udpc4:%d", peer4.LocalAddr().(*net.UDPAddr).Port), fmt.Sprintf("udpc6:%d", peer6.LocalAddr().(*net.UDPAddr).Port))
	type target struct {
		name, addr string
		port       int
		senders    []*sender
	}
	portOf := func(name string) int { p, _ := strconv.Atoi(s.Ready[name+"_port"]); return p }
	targets := []*target{
		{name: "udp4", addr: "127.0.0.1", port: portOf("udp4"), senders: []*sender{{sock: listen("udp4", "127.0.0.1")}, {sock: listen("udp4", "127.0.0.2")}}},
		{name: "udp6", addr: "::1", port: portOf("udp6"), senders: []*sender{{sock: listen("udp6", "::1")}, {sock: listen("udp6", "::1")}}},
		{name: "udpc4", addr: "127.0.0.1", port: portOf("udpc4"), senders: []*sender{{sock: peer4}}},
		{name: "udpc6", addr: "::1", port: portOf("udpc6"), senders: []*sender{{sock: peer6}}},
	}
	for _, tg := range targets {
		for i := range 6 {
			sd := tg.senders[i%len(tg.senders)]
			msg := fmt.Sprintf("%s-%d-%s", tg.name, i, strings.Repeat("x", i*1000))
			if _, err := sd.sock.WriteToUDP([]byte(msg), &net.UDPAddr{IP: net.ParseIP(tg.addr), Port: tg.port}); err != nil {
				t.Fatal(err)
			}
			sd.msgs = append(sd.msgs, msg)
		}
	}
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		for j, sd := range tg.senders {
			sd.sock.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 70000)
			for _, msg := range sd.msgs {
				n, err := sd.sock.Read(buf)
				if err != nil || string(buf[:n]) != "echo:"+msg {
					t.Fatalf("%s, sender %d: answer %.40q, %v; want echo:%.34q", tg.name, j, buf[:max(n, 0)], err, msg)
				}
			}
		}
	}
	// Each socket read its datagrams in the order sent. The subject says
	// so after it echoes them: its lines may come a little later.
	var got map[string][]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = map[string][]string{}
		lines := 0
		for _, l := range strings.Split(s.Output(), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "got" {
				got[f[1]] = append(got[f[1]], strings.TrimRight(f[2], "x"))
				lines++
			}
		}
		if lines >= 6*len(targets) || time.Now().After(deadline) {
			break
		}
	}
	for _, tg := range targets {
		var want []string
		for i := range 6 {
			want = append(want, fmt.Sprintf("%s-%d-", tg.name, i))
		}
		if fmt.Sprint(got[tg.name]) != fmt.Sprint(want) {
			t.Errorf("%s read %v, want %v", tg.name, got[tg.name], want)
		}
	}
}

// TestRestoreNetlink restores netlink sockets: a NETLINK_ROUTE one bound
// to groups, one of them past the 32 its address holds, a
// NETLINK_KOBJECT_UEVENT one in the group of the kernel's uevents and a
// NETLINK_AUDIT one: each has its protocol, port id and every group again.
func TestRestoreNetlink(t *testing.T) {
	testutil.RequireRoot(t)
	names := []string{"netlink", "uevent", "audit"}
	s := startInet(t, names...)
	type state struct {
		protocol int
		port     uint32
		groups   string
	}
	read := func(name string) state {
		t.Helper()
		dup, err := kernel.Getfd(s.Pid, int(s.ReadyUint(t, name)))
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dup)
		protocol, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(dup)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := kernel.GetsockoptBytes(dup, unix.SOL_NETLINK, unix.NETLINK_LIST_MEMBERSHIPS, buf)
		if err != nil {
			t.Fatal(err)
		}
		return state{protocol, sa.(*unix.SockaddrNetlink).Pid, fmt.Sprintf("%x", buf[:min(n, len(buf))])}
	}
	before := map[string]state{}
	for _, name := range names {
		before[name] = read(name)
		if before[name].port != uint32(s.ReadyUint(t, name+"_port")) {
			t.Fatalf("%s before the dump: %+v, port %s", name, before[name], s.Ready[name+"_port"])
		}
	}
	if g := before["netlink"].groups; len(g) < 16 || g[:16] != "1100000001000000" {
		t.Fatalf("netlink before the dump: groups %s, want 11000000 01000000", g)
	}
	if before["uevent"].groups[:2] != "01" {
		t.Fatalf("uevent before the dump: groups %s, want group 1", before["uevent"].groups)
	}
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	for _, name := range names {
		if got := read(name); got != before[name] {
			t.Errorf("%s restored: %+v, want %+v", name, got, before[name])
		}
	}
}

// TestRestoreUDPMulticast restores UDP sockets that joined a multicast
// group on the loopback interface, IPv4 and IPv6, set a peek offset and
// signal-driven I/O: each is a member again, with its peek offset, and
// O_ASYNC with its owner and signal.
func TestRestoreUDPMulticast(t *testing.T) {
	testutil.RequireRoot(t)
	s := startInet(t, "udpm4", "udpm6")
	state := func(name string, level int, group netip.Addr) (bool, int) {
		t.Helper()
		dup, err := kernel.Getfd(s.Pid, int(s.ReadyUint(t, name)))
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dup)
		_, _, member, err := kernel.McastFilter(dup, level, 1, group)
		if err != nil {
			t.Fatal(err)
		}
		off, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
		if err != nil {
			t.Fatal(err)
		}
		return member, off
	}
	sockets := []struct {
		name  string
		level int
		group netip.Addr
	}{{"udpm4", unix.SOL_IP, netip.MustParseAddr("239.7.7.7")}, {"udpm6", unix.SOL_IPV6, netip.MustParseAddr("ff15::777")}}
	for _, sk := range sockets {
		if member, off := state(sk.name, sk.level, sk.group); !member || off != 0 {
			t.Fatalf("%s before the dump: member of %v %v, peek offset %d; want a member, 0", sk.name, sk.group, member, off)
		}
	}
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	for _, sk := range sockets {
		if member, off := state(sk.name, sk.level, sk.group); !member || off != 0 {
			t.Errorf("%s restored: member of %v %v, peek offset %d; want a member, 0", sk.name, sk.group, member, off)
		}
		fd := int(s.ReadyUint(t, sk.name))
		if info, err := proc.ReadFdinfo(s.Pid, fd); err != nil || info.Flags&unix.O_ASYNC == 0 {
			t.Errorf("%s restored: flags %#o, %v; want O_ASYNC", sk.name, info.Flags, err)
		}
		dup, err := kernel.Getfd(s.Pid, fd)
		if err != nil {
			t.Fatal(err)
		}
		want := kernel.Owner{Type: kernel.FOwnerPID, Pid: s.Pid, Sig: int(unix.SIGUSR2)}
		if o, err := kernel.GetOwner(dup); err != nil || o != want {
			t.Errorf("%s restored: owner %+v, %v; want %+v", sk.name, o, err, want)
		}
		unix.Close(dup)
	}
}

// TestRestoreInetPrivilegedPort restores a process that bound a
// privileged port as root, then became nobody: its listener is on that
// port again, though the process could not bind it itself, owned by the
// process, and accepts.
func TestRestoreInetPrivilegedPort(t *testing.T) {
	testutil.RequireRoot(t)
	// A free privileged port.
	port := 0
	for p := 990; p < 1024 && port == 0; p++ {
		if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			port = p
		}
	}
	if port == 0 {
		t.Skip("no free port in 990-1023")
	}
	s := startInet(t, fmt.Sprintf("listen4:%d", port), "drop")
	fd := int(s.ReadyUint(t, "listen4"))
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	d := diagOf(t, s.Pid, fd, unix.AF_INET, unix.IPPROTO_TCP)
	if d.State != 10 || d.Local().Port() != uint16(port) || d.UID != nobody {
		t.Errorf("restored listener: state %d on %v, owner %d; want 10 (LISTEN) on port %d, owner %d", d.State, d.Local(), d.UID, port, nobody)
	}
	conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); line != fmt.Sprintf("hello %d\n", port) {
		t.Errorf("the restored listener's connection says %q, %v", line, err)
	}
}

// TestRestoreRawICMP restores raw ICMP sockets, IPv4 and IPv6, as ping
// makes when it may not make ping sockets, of a process that became
// nobody since: each is bound to the loopback address again, with the
// ICMP type filter it had (which the subject checks every tick), owned
// by the process, and the subject's echo requests sent on it after the
// restore are answered on it.
func TestRestoreRawICMP(t *testing.T) {
	testutil.RequireRoot(t)
	s := startInet(t, "raw4", "raw6", "drop")
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	dumped := dumpedFiles(t, c)
	for name, words := range map[string]int{"raw4": 1, "raw6": 8} {
		e := dumped[int(s.ReadyUint(t, name))].GetIsk()
		if e.GetType() != unix.SOCK_RAW || len(e.GetIpOpts().GetRaw().GetIcmpvFilter()) != words {
			t.Errorf("%s: dumped as %v, want a raw socket with an ICMP type filter of %d words", name, e, words)
		}
	}
	restoreSubject(t, s, c, restore.Options{})
	for _, name := range []string{"raw4", "raw6"} {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, name)), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != nobody {
			t.Errorf("%s: restored owned by %d, want %d", name, st.Uid, nobody)
		}
	}
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; {
		s.WaitTicks(t, 1)
		out := s.Output()
		if strings.Contains(out, "got raw4 echo ") && strings.Contains(out, "got raw6 echo ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no echo reply on both restored raw sockets:\n%s", out)
		}
	}
}

// TestRestoreTCPHalfClosed restores connections the subject shut down
// for writing, their peer outside the checkpoint: with data still queued
// ahead of its FIN (FIN_WAIT1), and with its FIN acknowledged
// (FIN_WAIT2). The peer reads every byte, then the end of the stream,
// and what it sends after the restore reaches the subject.
func TestRestoreTCPHalfClosed(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name, suffix string
		state        uint32
	}{
		{"FIN_WAIT1", ":shut", 4},
		{"FIN_WAIT2", ":quiet:shut", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unlockKeptAtCleanup(t)
			lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<10) })
				return errors.Join(err, serr)
			}}
			l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			s := startInet(t, fmt.Sprintf("tcp4:%d%s", l.Addr().(*net.TCPAddr).Port, tc.suffix))
			peer, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if _, err := peer.Write([]byte("before|")); err != nil {
				t.Fatal(err)
			}
			s.WaitTicks(t, 2)
			c := dumpAndReap(t, s)
			e := dumpedFiles(t, c)[int(s.ReadyUint(t, "tcp4"))].GetIsk()
			if e.GetState() != tc.state {
				t.Fatalf("dumped in state %d, want %d", e.GetState(), tc.state)
			}
			restoreSubject(t, s, c, restore.Options{})
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			peer.SetDeadline(time.Now().Add(20 * time.Second))
			data, err := io.ReadAll(peer)
			if err != nil || len(data) != int(s.ReadyUint(t, "tcp4_sent")) {
				t.Fatalf("the peer read %d bytes, %v; want %s, then the end of the stream", len(data), err, s.Ready["tcp4_sent"])
			}
			for i, b := range data {
				if b != byte(i%251) {
					t.Fatalf("byte %d is %d, want %d", i, b, i%251)
				}
			}
			if _, err := peer.Write([]byte("after|")); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				var got string
				for _, l := range strings.Split(s.Output(), "\n") {
					if f := strings.Fields(l); len(f) == 3 && f[0] == "got" {
						got += f[2]
					}
				}
				if got == "before|after|" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the subject read %q, want %q", got, "before|after|")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestRestoreTCPPeerClosed restores a connection whose peer, outside the
// checkpoint, had shut it down for writing before the dump, with data
// the subject had not read (CLOSE_WAIT): the peer's FIN does not come
// again, so the restore crafts it. The subject reads the data, then the
// end of the stream, and what it writes after reaches the peer, then its
// FIN. In LAST_ACK the subject had done so before the dump, but a lock
// the test holds dropped its data and FIN: they come after the restore.
func TestRestoreTCPPeerClosed(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name, family, addr string
		lastAck            bool
	}{
		{"CLOSE_WAIT", "tcp4", "127.0.0.1:0", false},
		{"CLOSE_WAIT IPv6", "tcp6", "[::1]:0", false},
		{"LAST_ACK", "tcp4", "127.0.0.1:0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unlockKeptAtCleanup(t)
			l, err := net.Listen(tc.family, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			s := startInet(t, fmt.Sprintf("%s:%d:quiet:eof", tc.family, l.Addr().(*net.TCPAddr).Port))
			peer, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if _, err := peer.Write([]byte("before|")); err != nil {
				t.Fatal(err)
			}
			if err := peer.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			s.WaitTicks(t, 2)
			got := func() []string {
				var got []string
				for _, l := range strings.Split(s.Output(), "\n") {
					if f := strings.Fields(l); len(f) == 3 && f[0] == "got" {
						got = append(got, f[2])
					}
				}
				return got
			}
			want, state := []string{"before|", "EOF"}, uint32(8)
			var lock *netlock.Lock
			if tc.lastAck {
				lock, err = netlock.Take("test-last-ack", []netlock.Conn{{
					Local:  peer.RemoteAddr().(*net.TCPAddr).AddrPort(),
					Remote: peer.LocalAddr().(*net.TCPAddr).AddrPort(),
				}})
				if err != nil {
					t.Fatal(err)
				}
				if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(5 * time.Second); !slices.Equal(got(), want); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the subject read %q, want %q", got(), want)
					}
				}
				state = 9
			}
			c := dumpAndReap(t, s)
			if e := dumpedFiles(t, c)[int(s.ReadyUint(t, tc.family))].GetIsk(); e.GetState() != state {
				t.Fatalf("dumped in state %d, want %d", e.GetState(), state)
			}
			if lock != nil {
				// Still locked by the dump's.
				if err := lock.Release(); err != nil {
					t.Fatal(err)
				}
			}
			restoreSubject(t, s, c, restore.Options{})
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			peer.SetDeadline(time.Now().Add(20 * time.Second))
			if data, err := io.ReadAll(peer); string(data) != "echo:before|bye|" || err != nil {
				t.Errorf("the peer read %q, %v; want %q, then the end of the stream", data, err, "echo:before|bye|")
			}
			if !slices.Equal(got(), want) {
				t.Errorf("the subject read %q, want %q", got(), want)
			}
		})
	}
}
