package restore_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/kernel"
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
	dup, err := files.Getfd(pid, fd)
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
func diagOf(t *testing.T, pid, fd int, family, protocol uint8) kernel.InetDiag {
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

// listenerOpts are what the inet subject sets on its listeners.
var listenerOpts = [][2]int{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.IPPROTO_TCP, unix.TCP_NODELAY}, {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
}

// TestRestoreInet restores TCP listeners and bound UDP sockets, IPv4 and
// IPv6: each listener is on its address and port again, with its
// backlog and options, and the subject accepts a new connection on it;
// each UDP socket answers a datagram sent after the restore.
func TestRestoreInet(t *testing.T) {
	testutil.RequireRoot(t)
	s := startInet(t, "listen4", "listen6", "udp4", "udp6")
	type sock struct {
		name     string
		family   uint8
		protocol uint8
		addr     string
	}
	socks := []sock{
		{"listen4", unix.AF_INET, unix.IPPROTO_TCP, "127.0.0.1"},
		{"listen6", unix.AF_INET6, unix.IPPROTO_TCP, "::1"},
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
		if f.GetType() != fdinfo.FdTypes_INETSK || f.GetIsk().GetSrcPort() != uint32(s.ReadyUint(t, k.name+"_port")) {
			t.Errorf("%s: dumped as %v", k.name, f)
		}
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	for _, k := range socks {
		fd := int(s.ReadyUint(t, k.name))
		after := diagOf(t, s.Pid, fd, k.family, k.protocol)
		b := before[k.name]
		if after.State != b.State || after.Local() != b.Local() || (k.protocol == unix.IPPROTO_TCP && after.Wqueue != b.Wqueue) {
			t.Errorf("%s: state %d on %v, backlog %d; before the dump state %d on %v, backlog %d",
				k.name, after.State, after.Local(), after.Wqueue, b.State, b.Local(), b.Wqueue)
		}
	}
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"listen4", "listen6"} {
		want := []int{1, 1, 1, 77, 11, 5}
		if got := sockOpts(t, s.Pid, int(s.ReadyUint(t, name)), listenerOpts); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: options %v, want %v", name, got, want)
		}
	}
	if got := sockOpts(t, s.Pid, int(s.ReadyUint(t, "listen6")), [][2]int{{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}}); got[0] != 1 {
		t.Errorf("listen6: IPV6_V6ONLY %d, want 1", got[0])
	}
	for _, k := range socks[:2] {
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
	for _, k := range socks[2:] {
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
