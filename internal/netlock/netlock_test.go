package netlock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
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
	for {
		// Blocked in a system call, where the runtime does not call
		// this a deadlock.
		unix.Pause()
	}
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

// loopback is where a test's listener listens and its client connects.
type loopback struct {
	name, listen, dial string
	mapped             bool // the server's addresses are IPv4-mapped IPv6
}

var loopbacks = []loopback{
	{"IPv4", "127.0.0.1", "127.0.0.1", false},
	{"IPv6", "::1", "::1", false},
	{"IPv4-mapped", "::", "127.0.0.1", true},
}

// newPair connects a client to a listener over lo.
func newPair(t *testing.T, lo loopback) pair {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(lo.listen), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(lo.dial), port)))
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
	if _, server := p.ends(); server.Local.Addr().Is4In6() != lo.mapped {
		t.Fatalf("server address %v: IPv4-mapped %v, want %v", server.Local, !lo.mapped, lo.mapped)
	}
	p.flows(t, "before the lock")
	return p
}

// ends is the connection seen from the client and from the server.
func (p pair) ends() (client, server Conn) {
	end := func(c *net.TCPConn) Conn {
		return Conn{c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()}
	}
	return end(p.client), end(p.server)
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

// TestLockDrops takes a lock on a real connection, given from either end
// or both: nothing passes either way, and once the lock is released the
// data queued meanwhile is retransmitted on the same connection.
func TestLockDrops(t *testing.T) {
	testutil.RequireRoot(t)
	for _, lo := range loopbacks {
		for _, ends := range []string{"both", "client", "server"} {
			t.Run(lo.name+"/"+ends, func(t *testing.T) {
				p := newPair(t, lo)
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

// TestKeep keeps a lock: its table is no longer owned, so it outlives the
// socket Keep closed, is listed by Locks, and drops until Unlock.
func TestKeep(t *testing.T) {
	testutil.RequireRoot(t)
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			p := newPair(t, lo)
			client, server := p.ends()
			id := testID(t)
			l := take(t, id, []Conn{client, server})
			if owned, ok := tableOwned(t, id); !ok || !owned {
				t.Fatalf("table of a lock: exists %v, owned %v; want owned", ok, owned)
			}
			if ids := locks(t); slices.Contains(ids, id) {
				t.Fatalf("Locks() = %q lists a lock not kept", ids)
			}
			send(t, p.client, "ping")
			if err := l.Keep(); err != nil {
				t.Fatal(err)
			}
			send(t, p.server, "pong")
			if owned, ok := tableOwned(t, id); !ok || owned {
				t.Fatalf("table of a kept lock: exists %v, owned %v; want not owned", ok, owned)
			}
			if ids := locks(t); !slices.Contains(ids, id) {
				t.Fatalf("Locks() = %q lacks kept lock %q", ids, id)
			}
			if received(t, p.server, "ping", 300*time.Millisecond) || received(t, p.client, "pong", 300*time.Millisecond) {
				t.Fatal("kept: data arrived")
			}
			if err := Unlock(id); err != nil {
				t.Fatal(err)
			}
			if ids := locks(t); slices.Contains(ids, id) {
				t.Fatalf("Locks() = %q after Unlock(%q)", ids, id)
			}
			p.retransmitted(t, "unlocked")
			p.flows(t, "unlocked")
		})
	}
}

// TestProcessDies takes a lock in a child process killed with SIGKILL, as a
// cryo that dies: a lock not kept goes with it, a kept one stays until
// Unlock.
func TestProcessDies(t *testing.T) {
	testutil.RequireRoot(t)
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "owned", true: "kept"}[keep], func(t *testing.T) {
			p := newPair(t, loopbacks[0])
			client, _ := p.ends()
			id := testID(t)
			child := testutil.StartSubject(t, os.Args[0], childArg, id, map[bool]string{false: "own", true: "keep"}[keep],
				client.Local.String(), client.Remote.String())
			if owned, ok := tableOwned(t, id); !ok || owned == keep {
				t.Fatalf("table while the child holds the lock: exists %v, owned %v", ok, owned)
			}
			p.blocked(t, "child holding the lock")
			if !child.Alive() {
				t.Fatalf("child ended holding the lock:\n%s", child.Output())
			}
			child.Kill()
			if _, ok := tableOwned(t, id); ok != keep {
				t.Fatalf("after the child died: table exists %v, want %v", ok, keep)
			}
			if keep {
				if received(t, p.server, "ping", 300*time.Millisecond) || received(t, p.client, "pong", 300*time.Millisecond) {
					t.Fatal("kept lock, child dead: data arrived")
				}
				if err := Unlock(id); err != nil {
					t.Fatal(err)
				}
			}
			p.retransmitted(t, "lock gone")
		})
	}
}

// TestHeld checks what another process may do to a lock a process holds:
// not remove it, nor take one of the same id.
func TestHeld(t *testing.T) {
	testutil.RequireRoot(t)
	id := testID(t)
	testutil.StartSubject(t, os.Args[0], childArg, id, "own")
	if err := Unlock(id); !errors.Is(err, ErrHeld) {
		t.Errorf("Unlock of a lock held by another process: %v, want ErrHeld", err)
	}
	if _, err := Take(id, nil); !errors.Is(err, ErrHeld) {
		t.Errorf("Take of an id held by another process: %v, want ErrHeld", err)
	}
}

// TestTakeExisting takes a lock of an id already kept.
func TestTakeExisting(t *testing.T) {
	testutil.RequireRoot(t)
	id := testID(t)
	if err := take(t, id, nil).Keep(); err != nil {
		t.Fatal(err)
	}
	if _, err := Take(id, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Take of a kept id: %v, want ErrExists", err)
	}
}

func TestUnlockMissing(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Unlock(testID(t)); err != nil {
		t.Errorf("Unlock of no lock: %v", err)
	}
}

// TestMany locks 50,000 connections of each family, more than a netlink
// attribute holds, in a batch larger than wmem_max (often 208 KiB, 4 MiB
// here), and keeps them.
func TestMany(t *testing.T) {
	testutil.RequireRoot(t)
	var conns []Conn
	for i := range 50000 {
		a4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		a6 := netip.AddrFrom16([16]byte{0xfd, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		conns = append(conns,
			Conn{netip.AddrPortFrom(a4, 40000), netip.AddrPortFrom(a4.Next(), uint16(1+i%60000))},
			Conn{netip.AddrPortFrom(a6, 40000), netip.AddrPortFrom(a6.Next(), uint16(1+i%60000))})
	}
	start := time.Now()
	l := take(t, testID(t), conns)
	taken := time.Since(start)
	if err := l.Keep(); err != nil {
		t.Fatal(err)
	}
	kept := time.Since(start) - taken
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections: Take %v, Keep %v, Release %v", len(conns), taken, kept, time.Since(start)-taken-kept)
}

func TestBadInput(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:80")
	v6 := netip.MustParseAddrPort("[::1]:80")
	for _, tc := range []struct {
		name  string
		id    string
		conns []Conn
		want  error
	}{
		{"empty id", "", nil, ErrBadID},
		{"NUL in id", "a\x00b", nil, ErrBadID},
		{"long id", strings.Repeat("x", 251), nil, ErrBadID},
		{"no address", "x", []Conn{{Local: v4}}, ErrBadConn},
		{"port 0", "x", []Conn{{v4, netip.AddrPortFrom(v4.Addr(), 0)}}, ErrBadConn},
		{"families", "x", []Conn{{v4, v6}}, ErrBadConn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Take(tc.id, tc.conns); !errors.Is(err, tc.want) {
				t.Errorf("Take: %v, want %v", err, tc.want)
			}
		})
	}
	if err := Unlock(""); !errors.Is(err, ErrBadID) {
		t.Errorf("Unlock(\"\"): %v, want ErrBadID", err)
	}
}

// TestKeys checks the set keys: both directions of each connection, one
// given from both ends counted once, IPv4-mapped addresses as IPv4.
func TestKeys(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1000")
	b := netip.MustParseAddrPort("127.0.0.2:2000")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.2]:2000")
	c := netip.MustParseAddrPort("[fe80::1%lo]:3000")
	d := netip.MustParseAddrPort("[fe80::2]:4000")
	ab := []byte{127, 0, 0, 1, 0x03, 0xe8, 0, 0, 127, 0, 0, 2, 0x07, 0xd0, 0, 0}
	ba := []byte{127, 0, 0, 2, 0x07, 0xd0, 0, 0, 127, 0, 0, 1, 0x03, 0xe8, 0, 0}
	cd := slices.Concat(c.Addr().WithZone("").AsSlice(), []byte{0x0b, 0xb8, 0, 0}, d.Addr().AsSlice(), []byte{0x0f, 0xa0, 0, 0})
	dc := slices.Concat(d.Addr().AsSlice(), []byte{0x0f, 0xa0, 0, 0}, c.Addr().WithZone("").AsSlice(), []byte{0x0b, 0xb8, 0, 0})
	for _, tc := range []struct {
		name   string
		conns  []Conn
		v4, v6 [][]byte
	}{
		{"none", nil, nil, nil},
		{"one", []Conn{{a, b}}, [][]byte{ab, ba}, nil},
		{"both ends", []Conn{{a, b}, {b, a}}, [][]byte{ab, ba}, nil},
		{"mapped", []Conn{{b, a}, {a, mapped}}, [][]byte{ab, ba}, nil},
		{"IPv6 zone", []Conn{{c, d}}, nil, [][]byte{cd, dc}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keys(tc.conns)
			if err != nil {
				t.Fatal(err)
			}
			want := []setKeys{{unix.NFPROTO_IPV4, tc.v4}, {unix.NFPROTO_IPV6, tc.v6}}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(setKeys{})); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func locks(t *testing.T) []string {
	t.Helper()
	ids, err := Locks()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// tableOwned is whether the table of id is owned, and whether it exists.
func tableOwned(t *testing.T, id string) (owned, ok bool) {
	t.Helper()
	ts, err := kernel.NftTables(unix.NFPROTO_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range ts {
		if tb.Name == tablePrefix+id {
			return isOwned(tb), true
		}
	}
	return false, false
}
