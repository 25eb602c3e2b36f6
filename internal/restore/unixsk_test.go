package restore_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// unixSubjectFds are test/subjects/unixsk.c's sockets; its child holds tr1.
var unixSubjectFds = []string{"st0", "st1", "dg0", "dg1", "sp0", "sp1", "lis", "cli", "acc", "pend1", "pend2",
	"abs", "named", "absz", "gone", "goner", "sh0", "sh1", "tr0", "tr1"}

// startUnixsk starts test/subjects/unixsk.c in a directory of its own;
// it and its child are killed when the test ends.
func startUnixsk(t *testing.T, args ...string) (*subject, int) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "unixsk.c"), append([]string{dir}, args...)...), dir: dir}
	child := int(s.ReadyUint(t, "child"))
	testutil.KillPidsAtCleanup(t, s.Pid, child)
	s.WaitTicks(t, 3)
	return s, child
}

// unixSockets is what the test sees of the subject's sockets.
func unixSockets(t *testing.T, s *subject, child int) map[string]testutil.UnixSock {
	t.Helper()
	out := map[string]testutil.UnixSock{}
	for _, name := range unixSubjectFds {
		pid := s.Pid
		if name == "tr1" {
			pid = child
		}
		out[name] = testutil.UnixSocket(t, pid, int(s.ReadyUint(t, name)))
	}
	return out
}

// TestRestoreUnixSockets checkpoints test/subjects/unixsk.c and restores
// it: every socket has its type, name, peer's name, queued data (each
// datagram with its sender), options, status flags, shutdown state and
// pending connections back, the pair split between parent and child too;
// the bound file has its mode back and the removed one stays removed;
// then every pair talks both ways, and the listening socket accepts its
// pending connections, from the clients they were.
func TestRestoreUnixSockets(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t)
	before := unixSockets(t, s, child)
	pid := strconv.Itoa(s.Pid)
	for name, want := range map[string][]string{
		"st1": {"abcdefg"}, "st0": {"ba"}, "dg1": {"|one", "|three"}, "sp1": {"|p1", "|p22"},
		"acc": {"to-acc"}, "abs": {s.dir + "/named|from-named", "|from-anon", "@cryo-unixsk-" + pid + "-z\x00|from-absz", "@cryo-unixsk-" + pid + "-gone\x00|from-gone"}, "gone": {"|to-gone"}, "tr1": {"to-child"}, "tr0": {"to-parent"},
	} {
		if got := before[name].Queue; !cmp.Equal(got, want) {
			t.Fatalf("%s holds %q before the dump, want %q", name, got, want)
		}
	}
	if l := before["lis"]; l.Pending != 2 || l.Backlog != 5 || before["sh1"].Shutdown != unix.SHUT_WR || !before["st0"].Passcred || before["st1"].PeekOff != 2 {
		t.Fatalf("before the dump: lis %+v, sh1 %+v, st0 %+v, st1 %+v", l, before["sh1"], before["st0"], before["st1"])
	}
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	_, log := restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 5)
	after := unixSockets(t, s, child)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("restored sockets differ (-dumped +restored):\n%s\nlog:\n%s", diff, log)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(s.dir, "lis"), &st); err != nil || st.Mode != unix.S_IFSOCK|0o640 {
		t.Errorf("%s/lis: mode %#o, %v; want a socket of mode 0640", s.dir, st.Mode, err)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/gone, removed at the dump, is there after the restore: %v", s.dir, err)
	}

	dup := func(name string) int {
		pid := s.Pid
		if name == "tr1" {
			pid = child
		}
		return testutil.UnixSocketDup(t, pid, int(s.ReadyUint(t, name)))
	}
	for _, p := range [][2]string{{"st0", "st1"}, {"st1", "st0"}, {"dg0", "dg1"}, {"dg1", "dg0"}, {"sp0", "sp1"}, {"sp1", "sp0"},
		{"cli", "acc"}, {"acc", "cli"}, {"tr0", "tr1"}, {"tr1", "tr0"}, {"goner", "gone"}} {
		talk(t, dup(p[0]), dup(p[1]), p[0]+" to "+p[1])
	}
	lis := dup("lis")
	// x/sys spells the address of an unnamed peer "@".
	pend := "@cryo-unixsk-" + pid + "-pend"
	peers := map[string]bool{}
	for range 2 {
		fd, sa, err := unix.Accept(lis)
		if err != nil {
			t.Fatalf("accept a pending connection: %v", err)
		}
		defer unix.Close(fd)
		peers[sa.(*unix.SockaddrUnix).Name] = true
		if sa.(*unix.SockaddrUnix).Name == pend {
			talk(t, dup("pend2"), fd, "pend2 to its accepted connection")
		}
	}
	if want := map[string]bool{"@": true, pend: true}; !cmp.Equal(peers, want) {
		t.Errorf("accepted connections from %v, want %v", peers, want)
	}
	buf := make([]byte, 16)
	if n, err := unix.Read(dup("sh1"), buf); err != nil || string(buf[:n]) != "bye" {
		t.Errorf("sh1: read %q, %v; want bye", buf[:n], err)
	}
	if n, err := unix.Read(dup("sh1"), buf); n != 0 || err != nil {
		t.Errorf("sh1: read %d bytes, %v after its data; want the end (its peer shut down)", n, err)
	}
}

// talk sends a message from socket a to socket b, each a duplicate of a
// restored process's, and reads b until it comes, after what was queued.
func talk(t *testing.T, a, b int, what string) {
	t.Helper()
	msg := []byte("ping:" + what)
	if _, err := unix.Write(a, msg); err != nil {
		t.Errorf("%s: send: %v", what, err)
		return
	}
	var got []byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.HasSuffix(got, msg) {
		n, _, err := unix.Recvfrom(b, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Errorf("%s: received %q, then %v", what, got, err)
			return
		}
		got = append(got, buf[:n]...)
	}
}

// TestRestoreUnixExternal checkpoints the subject with a datagram socket
// connected to a bound one of the test's, outside the checkpoint, with
// --ext-unix-sk: after the restore it is connected to that name again,
// and what it sends arrives there.
func TestRestoreUnixExternal(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "logger")
	logger, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(logger)
	if err := unix.Bind(logger, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	s, child := startUnixsk(t, "external", path)
	c := dumpAndReapWith(t, s, dump.Options{ExtUnixSk: true})
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	ext := testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "ext")))
	if got := testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, "ext"))).Peer; got != path {
		t.Errorf("ext is connected to %q, want %q", got, path)
	}
	talk(t, ext, logger, "ext to the logger outside")
}

// TestRestoreUnixRights checkpoints the subject with descriptors in
// flight (SCM_RIGHTS) to rt1: its own st0, and the read end of a pipe
// it closed since, holding data, whose write end it keeps. After the
// restore rt1 receives them: the first is st0's open file description,
// the second reads the pipe's data, then what is written to pw.
func TestRestoreUnixRights(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t, "rights")
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	rt1 := testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "rt1")))
	fds := recvRights(t, rt1, 2)
	buf := make([]byte, 16)
	if same, err := kernel.SameFile(os.Getpid(), fds[0], s.Pid, int(s.ReadyUint(t, "st0"))); err != nil || !same {
		t.Errorf("the first descriptor in flight is not st0's open file description: %v, %v", same, err)
	}
	if n, err := unix.Read(fds[1], buf); err != nil || string(buf[:n]) != "piped" {
		t.Errorf("the pipe in flight reads %q, %v; want piped", buf[:n], err)
	}
	if _, err := unix.Write(testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "pw"))), []byte("more")); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Read(fds[1], buf); err != nil || string(buf[:n]) != "more" {
		t.Errorf("the pipe in flight reads %q, %v after a write to pw; want more", buf[:n], err)
	}
}

// recvRights receives from socket fd the subject's message "r" with n
// descriptors in flight, which are closed when the test ends.
func recvRights(t *testing.T, fd, n int) []int {
	t.Helper()
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(n*4))
	got, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil || string(buf[:got]) != "r" {
		t.Fatalf("received %q, %v; want r", buf[:got], err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v; want one", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != n {
		t.Fatalf("descriptors %v, %v; want %d", fds, err, n)
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	return fds
}

// TestRestoreUnixEpollInFlight checkpoints the subject with an epoll in
// flight twice to rt1, which no process holds any more (zdtm scm05).
// After the restore rt1 receives one epoll twice, which reports st1
// readable with the data it was registered with.
func TestRestoreUnixEpollInFlight(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t, "epoll")
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	rt1 := testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "rt1")))
	eps := append(recvRights(t, rt1, 1), recvRights(t, rt1, 1)...)
	if same, err := kernel.SameFile(os.Getpid(), eps[0], os.Getpid(), eps[1]); err != nil || !same {
		t.Errorf("the two epolls in flight are not one open file description: %v, %v", same, err)
	}
	events := make([]unix.EpollEvent, 2)
	n, err := unix.EpollWait(eps[0], events, 0)
	if err != nil || n != 1 {
		t.Fatalf("epoll_wait on the epoll in flight: %d events, %v; want 1", n, err)
	}
	if data := uint64(uint32(events[0].Fd)) | uint64(uint32(events[0].Pad))<<32; events[0].Events != unix.EPOLLIN || data != 0x1122334455667788 {
		t.Errorf("epoll event %#x with data %#x, want EPOLLIN with 0x1122334455667788", events[0].Events, data)
	}
}

// TestRestoreUnixAsNobody restores the subject run as nobody: its
// sockets are made as nobody, so the bound file is nobody's and each end
// of a connection sees nobody as its peer (SO_PEERCRED), not root; and a
// path nobody may no longer bind at (its directory now root's) fails the
// restore, naming it.
func TestRestoreUnixAsNobody(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("needs setpriv (util-linux): %v", err)
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "unixsk")
	b, err := os.ReadFile(testutil.BuildC(t, "unixsk.c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var files string
	runs := 0
	start := func() (*subject, int) {
		runs++
		files = filepath.Join(dir, "files"+strconv.Itoa(runs))
		if err := os.Mkdir(files, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(files, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		s := &subject{Subject: testutil.StartSubject(t, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", bin, files), dir: files}
		child := int(s.ReadyUint(t, "child"))
		testutil.KillPidsAtCleanup(t, s.Pid, child)
		s.WaitTicks(t, 3)
		return s, child
	}
	peerUID := func(pid int, s *subject, name string) uint32 {
		t.Helper()
		cred, err := unix.GetsockoptUcred(testutil.UnixSocketDup(t, pid, int(s.ReadyUint(t, name))), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			t.Fatalf("%s: SO_PEERCRED: %v", name, err)
		}
		return cred.Uid
	}

	s, child := start()
	before := unixSockets(t, s, child)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	if diff := cmp.Diff(before, unixSockets(t, s, child)); diff != "" {
		t.Errorf("restored sockets differ (-dumped +restored):\n%s", diff)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(files, "lis"), &st); err != nil || st.Uid != nobody || st.Gid != nobody || st.Mode != unix.S_IFSOCK|0o640 {
		t.Errorf("%s/lis: owner %d:%d mode %#o, %v; want nobody's, 0640", files, st.Uid, st.Gid, st.Mode, err)
	}
	for _, name := range []string{"st0", "st1", "acc", "cli", "pend1", "sh1"} {
		if uid := peerUID(s.Pid, s, name); uid != nobody {
			t.Errorf("%s: its peer's uid (SO_PEERCRED) is %d, want nobody's", name, uid)
		}
	}

	// The directory becomes root's: nobody may not bind there (another
	// one: the first subject still holds its names).
	s, child = start()
	c = dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lis", "named"} {
		if err := os.Remove(filepath.Join(files, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(files, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir})
	if err == nil || !strings.Contains(err.Error(), "bind "+strconv.Quote(filepath.Join(files, "lis"))) || !errors.Is(err, unix.EACCES) {
		t.Fatalf("restore with %s root's: %v, want binding lis refused (EACCES)", files, err)
	}
	if _, err := os.Lstat(filepath.Join(files, "lis")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/lis exists after the refused restore: %v", files, err)
	}
}

// TestRestoreUnixRelativeName restores a datagram socket bound to a name
// relative to the process's directory, holding a datagram sent to that
// name by a process that has exited: the datagram is put back through the
// name in that directory, not in cryo's.
func TestRestoreUnixRelativeName(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t, "relative")
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	rel := testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "rel")))
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(rel, buf, unix.MSG_DONTWAIT|unix.MSG_PEEK)
	if err != nil || string(buf[:max(n, 0)]) != "from-exited" {
		t.Errorf("rel holds %q, %v; want from-exited", buf[:max(n, 0)], err)
	}
}

// TestRestoreUnixClosedClient restores a server's connection whose client
// closed (a tmux server's, its client gone, the end not read yet), held at
// a descriptor below its listener's, so made first: it reads the data the
// client sent, then the end, and the listener is bound to its name again
// and accepts a new client.
func TestRestoreUnixClosedClient(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t, "closed-client")
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	a2 := testutil.UnixSocketDup(t, s.Pid, int(s.ReadyUint(t, "a2")))
	buf := make([]byte, 64)
	n, err := unix.Read(a2, buf)
	if err != nil || string(buf[:max(n, 0)]) != "from-gone" {
		t.Errorf("a2 reads %q, %v; want from-gone", buf[:max(n, 0)], err)
	}
	if n, err := unix.Read(a2, buf); n != 0 || err != nil {
		t.Errorf("a2 then reads %d bytes, %v; want the end", n, err)
	}
	conn, err := net.Dial("unix", filepath.Join(s.dir, "l2"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if l2 := testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, "l2"))); l2.Pending != 1 {
		t.Errorf("l2 has %d connections pending, want the new one", l2.Pending)
	}
}

// TestRestoreUnixRemovedNameTaken restores sockets whose removed name
// another file holds now: a listening socket whose name is another
// listening socket's file, and a datagram socket whose name is a FIFO's.
// Each is bound at its name again while the file there steps aside, which
// is back after: DIR/over still reaches the other socket, DIR/fifoed is
// the FIFO, and the datagram socket has its name and its queue.
func TestRestoreUnixRemovedNameTaken(t *testing.T) {
	testutil.RequireRoot(t)
	s, child := startUnixsk(t, "overbound")
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(s.Pid, child); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	conn, err := net.Dial("unix", filepath.Join(s.dir, "over"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	o1 := testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, "o1")))
	o2 := testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, "o2")))
	if o1.Pending != 1 || o2.Pending != 0 || o2.Name != filepath.Join(s.dir, "over") {
		t.Errorf("a connection to over reached o1 %d times, o2 (%s) %d times; want o1 once", o1.Pending, o2.Name, o2.Pending)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(s.dir, "fifoed"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifoed has mode %#o, %v; want a FIFO", st.Mode, err)
	}
	f1 := testutil.UnixSocket(t, s.Pid, int(s.ReadyUint(t, "f1")))
	if f1.Name != filepath.Join(s.dir, "fifoed") || len(f1.Queue) != 1 || !strings.HasSuffix(f1.Queue[0], "|to-f1") {
		t.Errorf("f1: name %s, queue %q; want fifoed and to-f1", f1.Name, f1.Queue)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "cryo-aside") {
			t.Errorf("%s left in %s", e.Name(), s.dir)
		}
	}
}
