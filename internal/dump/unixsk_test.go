package dump_test

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// unixSubjectFds are test/subjects/unixsk.c's sockets of the parent.
var unixSubjectFds = []string{"st0", "st1", "dg0", "dg1", "sp0", "sp1", "lis", "cli", "acc", "pend1", "pend2",
	"abs", "named", "absz", "gone", "goner", "sh0", "sh1", "tr0"}

// startUnixsk starts test/subjects/unixsk.c in a directory of its own;
// it and its child are killed when the test ends.
func startUnixsk(t *testing.T, args ...string) (*testutil.Subject, string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "unixsk.c"), append([]string{dir}, args...)...)
	testutil.KillPidsAtCleanup(t, s.Pid, int(s.ReadyUint(t, "child")))
	s.WaitTicks(t, 3)
	return s, dir
}

// TestDumpUnixSockets dumps the unix sockets subject, leaving it running:
// its sockets are exactly as before (the queues peeked, not taken; the
// options the dump set to read them set back), every image decodes with
// crit, and the entries hold what CRIU's do: peers by inode, a pending
// connection's client with the listening socket as peer, names, the bound
// file's mode, a removed name, shutdown, options, and each queued
// datagram with its sender's address.
func TestDumpUnixSockets(t *testing.T) {
	testutil.RequireRoot(t)
	s, dir := startUnixsk(t)
	before := map[string]testutil.UnixSock{}
	for _, n := range unixSubjectFds {
		before[n] = testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, n)))
	}
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	for _, n := range unixSubjectFds {
		if diff := cmp.Diff(before[n], testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, n)))); diff != "" {
			t.Errorf("%s changed by the dump (-before +after):\n%s", n, diff)
		}
	}
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	usk := func(name string) (uint32, *unixEntry) {
		t.Helper()
		f := im.file(t, uint32(s.ReadyUint(t, name)))
		if f.GetUsk() == nil {
			t.Fatalf("%s: %v entry, want UNIXSK", name, f.GetType())
		}
		return f.GetId(), &unixEntry{f.GetUsk().GetIno(), f.GetUsk().GetType(), f.GetUsk().GetState(), f.GetUsk().GetPeer(), f.GetUsk().GetBacklog(),
			string(f.GetUsk().GetName()), f.GetUsk().GetDeleted(), f.GetUsk().GetFilePerms().GetMode(), f.GetUsk().GetShutdown(), f.GetUsk().GetFlags(), f.GetUsk().GetOpts().GetSoPasscred()}
	}
	e := map[string]*unixEntry{}
	ids := map[uint32]string{}
	for _, n := range unixSubjectFds {
		id, u := usk(n)
		e[n], ids[id] = u, n
	}
	pid := strconv.Itoa(s.Pid)
	for _, tc := range []struct {
		name string
		got  unixEntry
		want unixEntry
	}{
		{"st0", *e["st0"], unixEntry{e["st0"].Ino, unix.SOCK_STREAM, 1, e["st1"].Ino, 0, "", false, 0, 0, unix.O_RDWR | unix.O_NONBLOCK, true}},
		{"dg1", *e["dg1"], unixEntry{e["dg1"].Ino, unix.SOCK_DGRAM, 1, e["dg0"].Ino, 0, "", false, 0, 0, unix.O_RDWR, false}},
		{"sp0", *e["sp0"], unixEntry{e["sp0"].Ino, unix.SOCK_SEQPACKET, 1, e["sp1"].Ino, 0, "", false, 0, 0, unix.O_RDWR, false}},
		{"lis", *e["lis"], unixEntry{e["lis"].Ino, unix.SOCK_STREAM, 10, 0, 5, dir + "/lis\x00", false, unix.S_IFSOCK | 0o640, 0, unix.O_RDWR, false}},
		{"acc", *e["acc"], unixEntry{e["acc"].Ino, unix.SOCK_STREAM, 1, e["cli"].Ino, 0, dir + "/lis\x00", false, unix.S_IFSOCK | 0o640, 0, unix.O_RDWR, false}},
		{"pend1", *e["pend1"], unixEntry{e["pend1"].Ino, unix.SOCK_STREAM, 1, e["lis"].Ino, 0, "", false, 0, 0, unix.O_RDWR, false}},
		{"pend2", *e["pend2"], unixEntry{e["pend2"].Ino, unix.SOCK_STREAM, 1, e["lis"].Ino, 0, "\x00cryo-unixsk-" + pid + "-pend", false, 0, 0, unix.O_RDWR, false}},
		{"gone", *e["gone"], unixEntry{e["gone"].Ino, unix.SOCK_DGRAM, 1, 0, 0, dir + "/gone\x00", true, 0, 0, unix.O_RDWR, false}},
		{"goner", *e["goner"], unixEntry{e["goner"].Ino, unix.SOCK_DGRAM, 1, e["gone"].Ino, 0, "", false, 0, 0, unix.O_RDWR, false}},
		{"sh0", *e["sh0"], unixEntry{e["sh0"].Ino, unix.SOCK_STREAM, 1, e["sh1"].Ino, 0, "", false, 0, pb.SkShutdown_WRITE, unix.O_RDWR, false}},
		{"sh1", *e["sh1"], unixEntry{e["sh1"].Ino, unix.SOCK_STREAM, 1, e["sh0"].Ino, 0, "", false, 0, pb.SkShutdown_READ, unix.O_RDWR, false}},
	} {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s entry (-want +got):\n%s", tc.name, diff)
		}
	}
	recs, data := withPayloads[pb.SkPacketEntry](t, im.dir, image.SkQueues, 0)
	var got []string
	for i, r := range recs {
		if n, ok := ids[r.GetIdFor()]; ok && (n == "dg1" || n == "abs" || n == "st1" || n == "sp1" || n == "gone") {
			got = append(got, n+" "+string(r.GetAddr())+"|"+string(data[i]))
		}
	}
	want := []string{"st1 |abcdefg", "dg1 |one", "dg1 |three", "sp1 |p1", "sp1 |p22",
		"abs " + dir + "/named\x00|from-named", "abs |from-anon", "abs \x00cryo-unixsk-" + pid + "-z\x00|from-absz", "abs \x00cryo-unixsk-" + pid + "-gone\x00|from-gone", "gone |to-gone"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued packets (-want +got):\n%s", diff)
	}
}

// unixEntry is the fields of a unix_sk_entry a test checks.
type unixEntry struct {
	Ino, Type, State, Peer, Backlog uint32
	Name                            string
	Deleted                         bool
	Mode                            uint32
	Shutdown                        pb.SkShutdown
	Flags                           uint32
	Passcred                        bool
}

// TestDumpUnixRefused dumps the subject holding a socket whose peer is
// outside the checkpoint, or a descriptor in flight: the dump refuses it,
// naming the descriptor, the process and the peer, and the subject runs
// on.
func TestDumpUnixRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := t.TempDir()
	logger, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(tmp, "logger"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer logger.Close()
	server, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(tmp, "server"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	for _, tc := range []struct {
		name  string
		args  []string
		opts  dump.Options
		want  func(s *testutil.Subject) []string
		setup func(t *testing.T, s *testutil.Subject)
	}{
		{"datagram from outside", nil, dump.Options{ExtUnixSk: true},
			func(s *testutil.Subject) []string {
				return []string{"fd " + s.Ready["abs"] + " of pid " + strconv.Itoa(s.Pid), "a datagram from " + strconv.Quote(filepath.Join(tmp, "logger"))}
			},
			func(t *testing.T, s *testutil.Subject) {
				abs := &net.UnixAddr{Name: "@cryo-unixsk-" + strconv.Itoa(s.Pid), Net: "unixgram"}
				if _, err := logger.WriteToUnix([]byte("from outside"), abs); err != nil {
					t.Fatal(err)
				}
			}},
		{"datagram from an abstract name outside, still bound", nil, dump.Options{},
			func(s *testutil.Subject) []string {
				return []string{"fd " + s.Ready["abs"] + " of pid " + strconv.Itoa(s.Pid), "a datagram from \"@cryo-test-sender-" + strconv.Itoa(s.Pid), "bound to that name still"}
			},
			func(t *testing.T, s *testutil.Subject) {
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@cryo-test-sender-" + strconv.Itoa(s.Pid), Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				abs := &net.UnixAddr{Name: "@cryo-unixsk-" + strconv.Itoa(s.Pid), Net: "unixgram"}
				if _, err := c.WriteToUnix([]byte("from outside"), abs); err != nil {
					t.Fatal(err)
				}
			}},
		{"datagram peer outside", []string{"external", filepath.Join(tmp, "logger")}, dump.Options{},
			func(s *testutil.Subject) []string {
				return []string{"fd " + s.Ready["ext"] + " of pid " + strconv.Itoa(s.Pid), strconv.Quote(filepath.Join(tmp, "logger")), "--ext-unix-sk"}
			}, nil},
		{"stream peer outside, with --ext-unix-sk", []string{"stream-external", filepath.Join(tmp, "server")}, dump.Options{ExtUnixSk: true},
			func(s *testutil.Subject) []string {
				return []string{"fd " + s.Ready["ext"] + " of pid " + strconv.Itoa(s.Pid), strconv.Quote(filepath.Join(tmp, "server")), "not accepted yet"}
			}, nil},
		{"eventfd in flight, held by none", []string{"eventfd"}, dump.Options{},
			func(s *testutil.Subject) []string {
				return []string{"fd " + s.Ready["rt1"] + " of pid " + strconv.Itoa(s.Pid), "SCM_RIGHTS", "anon_inode:[eventfd]", "which no process of the checkpoint holds"}
			}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := startUnixsk(t, tc.args...)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			opts := tc.opts
			opts.LeaveRunning = true
			expectRefused(t, s, opts, tc.want(s)...)
		})
	}
}
