package dump_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpInet dumps TCP listeners and UDP sockets, IPv4 and IPv6, one
// with a datagram queued, and reads them back with crit: family, type,
// protocol, state, address, port, backlog and IPV6_V6ONLY as CRIU names
// them; and a netlink socket, which crit decodes too.
func TestDumpInet(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "inet.c"), "listen4", "listen6", "udp4", "udp6", "netlink")
	// A datagram queued, in sk-queues.img.
	c, err := net.Dial("udp4", "127.0.0.1:"+s.Ready["udp4_port"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	// Names and addresses are crit's --pretty output.
	crit := critFiles(t, d.dir, "--pretty")
	for _, tc := range []struct {
		name string
		want critInetSk
	}{
		{"listen4", critInetSk{Family: "INET", Type: "STREAM", Proto: "TCP", State: "LISTEN", SrcAddr: []string{"127.0.0.1"}, Backlog: 7}},
		{"listen6", critInetSk{Family: "INET6", Type: "STREAM", Proto: "TCP", State: "LISTEN", SrcAddr: []string{"::1"}, Backlog: 7, V6only: true}},
		{"udp4", critInetSk{Family: "INET", Type: "DGRAM", Proto: "UDP", State: "CLOSE", SrcAddr: []string{"127.0.0.1"}}},
		// Bound to an address of its own, an IPv6 socket is IPv6-only.
		{"udp6", critInetSk{Family: "INET6", Type: "DGRAM", Proto: "UDP", State: "CLOSE", SrcAddr: []string{"::1"}, V6only: true}},
	} {
		f := im.file(t, uint32(s.ReadyUint(t, tc.name)))
		tc.want.SrcPort = uint32(s.ReadyUint(t, tc.name+"_port"))
		got := crit[f.GetId()].Isk
		if got == nil {
			t.Errorf("%s: crit shows no inet socket in %+v", tc.name, crit[f.GetId()])
			continue
		}
		if diff := cmp.Diff(tc.want, *got); diff != "" {
			t.Errorf("%s: crit's entry (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestDumpInetRefused dumps sockets cryo cannot keep: each is refused,
// named, and the subject runs on.
func TestDumpInetRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name, arg string
		// peer, if set, is a listener the subject connects to (arg
		// gains its port), whose end is passed to before.
		peer   bool
		suffix string // after the port
		// before is done to the subject before the dump.
		before func(t *testing.T, s *testutil.Subject, peer net.Conn)
		want   []string
	}{
		{name: "raw socket queue", arg: "rawq4", want: []string{"raw socket 127.0.0.1 of protocol 1 holds a packet not read yet"}},
		{name: "netlink queue", arg: "netlinkq", want: []string{"netlink socket with a message of"}},
		{name: "timestamping counter", arg: "udpt4", want: []string{"SO_TIMESTAMPING flags 0x80", "packet counter"}},
		{name: "accept queue", arg: "listen4", before: func(t *testing.T, s *testutil.Subject, _ net.Conn) {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+s.Ready["listen4_port"], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}, want: []string{"TCP listener 127.0.0.1:", "1 connections not accepted"}},
		{name: "shut down for reading", arg: "tcp4", peer: true, suffix: ":noread", want: []string{"TCP connection 127.0.0.1:", "in state ESTABLISHED shut down"}},
		{name: "MPTCP connection", arg: "mtcp4", peer: true, want: []string{"MPTCP connection 127.0.0.1:", "both ends asked for MPTCP"}},
		// Both ends shut down: the subject's end waits in TIME_WAIT,
		// which a socket of its own holds, CLOSE, of no port.
		{name: "ended connection", arg: "tcp4", peer: true, suffix: ":shut", before: func(t *testing.T, s *testutil.Subject, peer net.Conn) {
			peer.Close()
			time.Sleep(200 * time.Millisecond)
		}, want: []string{"was connected and is closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arg := tc.arg
			var l net.Listener
			if tc.peer {
				var err error
				if l, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				arg = fmt.Sprintf("%s:%d:quiet%s", arg, l.Addr().(*net.TCPAddr).Port, tc.suffix)
			}
			s := testutil.StartSubject(t, testutil.BuildC(t, "inet.c"), arg)
			var peer net.Conn
			if l != nil {
				var err error
				if peer, err = l.Accept(); err != nil {
					t.Fatal(err)
				}
				defer peer.Close()
			}
			if tc.before != nil {
				tc.before(t, s, peer)
			}
			expectRefused(t, s, dump.Options{LeaveRunning: true}, tc.want...)
		})
	}
}

// TestDumpTCPInFlight connects to a TCP listener of test/subjects/inet.c
// while the dump holds the subject stopped, so that the connection waits
// in the listener's accept queue: the dump refuses the listener, naming
// it, and leaves the subject running as it was; with TCPSkipInFlight
// (criu's --skip-in-flight) it dumps it, with an empty queue, and
// says so in the log.
func TestDumpTCPInFlight(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "inet.c"), "listen4")
	addr := "127.0.0.1:" + s.Ready["listen4_port"]
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	connect := func() {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	expectRefused(t, s, dump.Options{LeaveRunning: true, Frozen: connect}, "listener "+addr, "1 connections not accepted yet", "--skip-in-flight")
	log, buf := newLog()
	dir := filepath.Join(t.TempDir(), "images")
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true, TCPSkipInFlight: true, Frozen: connect, Log: log}); err != nil {
		t.Fatalf("dump: %v\nlog:\n%s", err, buf)
	}
	if !strings.Contains(buf.String(), "left behind") || !strings.Contains(buf.String(), addr) {
		t.Errorf("the log does not say the listener's connection was left behind:\n%s", buf)
	}
	s.WaitTicks(t, 2)
	critDecode(t, dir)
}
