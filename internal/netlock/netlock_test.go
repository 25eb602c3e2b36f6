package netlock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		runChild(os.Args[2:])
	}
	if os.Geteuid() == 0 {
		removeStale()
	}
	os.Exit(testutil.Run(m))
}

// childArg makes the test binary a process that takes a lock and waits to
// be killed: runChild.
const childArg = "netlock-child"

// runChild takes the lock of args (id, "keep" or "own", then the local and
// remote address of each connection), prints "ready" and waits.
func runChild(args []string) {
	var conns []Conn
	for i := 2; i+1 < len(args); i += 2 {
		conns = append(conns, Conn{netip.MustParseAddrPort(args[i]), netip.MustParseAddrPort(args[i+1])})
	}
	l, err := Take(args[0], conns)
	if err == nil && args[1] == "keep" {
		err = l.Keep()
	}
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

// testPrefix begins the ids of the locks of the tests, followed by the
// test process's pid.
const testPrefix = "test-"

// removeStale removes the kept locks of test runs whose process is gone,
// so that one that failed to clean up leaves nothing for long.
func removeStale() {
	ids, err := Locks()
	if err != nil {
		return
	}
	for _, id := range ids {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(id, testPrefix), "-", 2)[0])
		if strings.HasPrefix(id, testPrefix) && err == nil && unix.Kill(pid, 0) == unix.ESRCH {
			Unlock(id)
		}
	}
}

// testID is an id no other test or run uses, whose lock the test's
// cleanup removes.
func testID(t *testing.T) string {
	t.Helper()
	id := fmt.Sprintf("%s%d-%s", testPrefix, os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	t.Cleanup(func() {
		if err := Unlock(id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return id
}

// take takes a lock that the test's cleanup releases.
func take(t *testing.T, id string, conns []Conn) *Lock {
	t.Helper()
	l, err := Take(id, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Release(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return l
}

// pair is a TCP connection over loopback, both ends in the test process.
type pair struct{ client, server *net.TCPConn }

// newPair connects a client to a listener on addr ("127.0.0.1" or "::1").
func newPair(t *testing.T, addr string) pair {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := pair{c, s}
	p.flows(t, "before the lock")
	return p
}

// ends is the connection seen from the client and from the server.
func (p pair) ends() (client, server Conn) {
	return Conn{p.client.LocalAddr().(*net.TCPAddr).AddrPort(), p.client.RemoteAddr().(*net.TCPAddr).AddrPort()},
		Conn{p.server.LocalAddr().(*net.TCPAddr).AddrPort(), p.server.RemoteAddr().(*net.TCPAddr).AddrPort()}
}

// send writes msg on from, which queues it whether or not it can leave.
func send(t *testing.T, from *net.TCPConn, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// received reads len(want) bytes from to within d, reports whether they
// came, and fails the test on any error but the deadline (a reset).
func received(t *testing.T, to *net.TCPConn, want string, d time.Duration) bool {
	t.Helper()
	to.SetReadDeadline(time.Now().Add(d))
	defer to.SetReadDeadline(time.Time{})
	buf := make([]byte, len(want))
	n, err := to.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n < len(want) {
		m, err := to.Read(buf[n:])
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		n += m
	}
	if got := string(buf[:n]); got != want {
		t.Fatalf("read %q, want %q", got, want)
	}
	return true
}

// flows checks that data goes both ways.
func (p pair) flows(t *testing.T, when string) {
	t.Helper()
	send(t, p.client, "ping")
	send(t, p.server, "pong")
	if !received(t, p.server, "ping", 5*time.Second) || !received(t, p.client, "pong", 5*time.Second) {
		t.Fatalf("%s: no data", when)
	}
}

// blocked sends a message each way and checks that neither arrives; the
// messages stay queued, to be retransmitted.
func (p pair) blocked(t *testing.T, when string) {
	t.Helper()
	send(t, p.client, "ping")
	send(t, p.server, "pong")
	if received(t, p.server, "ping", 300*time.Millisecond) {
		t.Fatalf("%s: data from the client arrived", when)
	}
	if received(t, p.client, "pong", 300*time.Millisecond) {
		t.Fatalf("%s: data from the server arrived", when)
	}
}

// retransmitted checks that the messages of blocked arrive, the
// connection not reset: TCP's retransmission timer backs off from 200 ms,
// so they come within seconds.
func (p pair) retransmitted(t *testing.T, when string) {
	t.Helper()
	if !received(t, p.server, "ping", 10*time.Second) || !received(t, p.client, "pong", 10*time.Second) {
		t.Fatalf("%s: data not retransmitted", when)
	}
}

var loopbacks = []struct{ name, addr string }{{"IPv4", "127.0.0.1"}, {"IPv6", "::1"}}

// TestLockDrops takes a lock on a real connection, given from either end
// or both: nothing passes either way, and once the lock is released the
// data queued meanwhile is retransmitted on the same connection.
func TestLockDrops(t *testing.T) {
	testutil.RequireRoot(t)
	for _, lo := range loopbacks {
		for _, ends := range []string{"both", "client", "server"} {
			t.Run(lo.name+"/"+ends, func(t *testing.T) {
				p := newPair(t, lo.addr)
				client, server := p.ends()
				conns := map[string][]Conn{"both": {client, server}, "client": {client}, "server": {server}}[ends]
				l := take(t, testID(t), conns)
				p.blocked(t, "locked")
				if err := l.Release(); err != nil {
					t.Fatal(err)
				}
				p.retransmitted(t, "released")
				p.flows(t, "released")
			})
		}
	}
}

// tableFlags is the flags of the table of id, and whether it exists.
func tableFlags(t *testing.T, id string) (uint32, bool) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range ts {
		if tb.Name == tablePrefix+id {
			return tb.Flags, true
		}
	}
	return 0, false
}
