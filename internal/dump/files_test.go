package dump_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// What test/subjects/epoll.c holds; the two must agree.
const (
	efdCount    = 0x123456789
	semCount    = 3
	tagEfd      = 0xefd0000000000000
	tagEfdDup   = 0xefdd000000000000
	tagSem      = 0x5e30000000000000
	tagPipeR    = 0x91be000000000000
	tagPipeW    = 0x91bf000000000000
	tagEmpty    = 0xe3b7000000000000
	tagStale    = 0x57a1000000000000
	epollAlways = unix.EPOLLERR | unix.EPOLLHUP // the kernel adds them to every registration
)

// registration is one epoll target as the images and fdinfo show it.
type registration struct {
	Fd     uint32
	Events uint32
	Data   uint64
}

// epollSubjectWants are the registrations of the epoll subject's two
// epolls, by the names of its ready line.
func epollSubjectWants(t *testing.T, s *testutil.Subject) (epfd, sleepEp []registration) {
	t.Helper()
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
	reg := func(k string, events uint32, tag uint64) registration {
		return registration{fd(k), events | epollAlways, tag | uint64(fd(k))}
	}
	epfd = []registration{
		reg("efd", unix.EPOLLIN, tagEfd),
		reg("efd_dup", unix.EPOLLIN|unix.EPOLLRDHUP, tagEfdDup),
		reg("sem", unix.EPOLLIN|unix.EPOLLOUT, tagSem),
		reg("pipe_r", unix.EPOLLIN, tagPipeR),
		reg("pipe_w", unix.EPOLLOUT|unix.EPOLLET, tagPipeW),
		reg("empty_r", unix.EPOLLIN, tagEmpty),
	}
	return sortRegs(epfd), []registration{reg("empty_r", unix.EPOLLIN, tagEmpty)}
}

func sortRegs(r []registration) []registration {
	slices.SortFunc(r, func(a, b registration) int { return int(a.Fd) - int(b.Fd) })
	return r
}

// imageRegs are the registrations an EVENTPOLL entry holds.
func imageRegs(t *testing.T, f *pb.FileEntry) []registration {
	t.Helper()
	var out []registration
	for _, tfd := range f.GetEpfd().GetTfd() {
		if tfd.GetId() != f.GetId() {
			t.Errorf("epoll file %d: target fd %d has the id %d", f.GetId(), tfd.GetTfd(), tfd.GetId())
		}
		out = append(out, registration{tfd.GetTfd(), tfd.GetEvents(), tfd.GetData()})
	}
	return sortRegs(out)
}

// TestDumpEventpoll dumps the epoll subject and checks its eventfds and
// epolls in the images, as cryo and crit read them.
func TestDumpEventpoll(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"))
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 5)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }

	for _, tc := range []struct {
		name           string
		fd             uint32
		counter        uint64
		flags, fdFlags uint32
		shares         string // the descriptor it shares its file with
	}{
		{"efd", fd("efd"), efdCount, unix.O_RDWR | unix.O_NONBLOCK, unix.FD_CLOEXEC, ""},
		{"efd_dup", fd("efd_dup"), efdCount, unix.O_RDWR | unix.O_NONBLOCK, 0, "efd"},
		// The semaphore mode is bit 0 of the flags.
		{"sem", fd("sem"), semCount, unix.O_RDWR | unix.EFD_SEMAPHORE, 0, ""},
	} {
		f := im.file(t, tc.fd)
		if f.GetType() != pb.FdTypes_EVENTFD || f.GetEfd() == nil {
			t.Errorf("%s (fd %d): %v entry, want EVENTFD", tc.name, tc.fd, f.GetType())
			continue
		}
		if got := f.GetEfd().GetCounter(); got != tc.counter {
			t.Errorf("%s (fd %d): counter %#x, want %#x", tc.name, tc.fd, got, tc.counter)
		}
		if got := f.GetEfd().GetFlags(); got != tc.flags {
			t.Errorf("%s (fd %d): flags %#o, want %#o", tc.name, tc.fd, got, tc.flags)
		}
		if got := im.fds[tc.fd].GetFlags(); got != tc.fdFlags {
			t.Errorf("%s (fd %d): descriptor flags %d, want %d", tc.name, tc.fd, got, tc.fdFlags)
		}
		if tc.shares != "" && im.fds[tc.fd].GetId() != im.fds[fd(tc.shares)].GetId() {
			t.Errorf("%s (fd %d) does not share its file with %s", tc.name, tc.fd, tc.shares)
		}
	}

	wantEp, wantSleep := epollSubjectWants(t, s)
	for _, tc := range []struct {
		name  string
		fd    uint32
		flags uint32
		want  []registration
	}{
		{"epfd", fd("epfd"), unix.O_RDWR, wantEp},
		{"sleep_ep", fd("sleep_ep"), unix.O_RDWR, wantSleep},
	} {
		f := im.file(t, tc.fd)
		if f.GetType() != pb.FdTypes_EVENTPOLL || f.GetEpfd() == nil {
			t.Errorf("%s (fd %d): %v entry, want EVENTPOLL", tc.name, tc.fd, f.GetType())
			continue
		}
		if got := f.GetEpfd().GetFlags(); got != tc.flags {
			t.Errorf("%s (fd %d): flags %#o, want %#o", tc.name, tc.fd, got, tc.flags)
		}
		if diff := cmp.Diff(tc.want, imageRegs(t, f)); diff != "" {
			t.Errorf("%s (fd %d) registrations (-want +got):\n%s", tc.name, tc.fd, diff)
		}
	}

	// crit, an independent decoder, reads the same.
	crit := critFiles(t, d.dir)
	if got := crit[im.fds[fd("efd")].GetId()]; got.Efd == nil || got.Efd.Counter != efdCount {
		t.Errorf("crit decodes the eventfd as %+v, want counter %#x", got, efdCount)
	}
	var critRegs []registration
	for _, r := range crit[im.fds[fd("epfd")].GetId()].Epfd.Tfd {
		critRegs = append(critRegs, registration{r.Tfd, r.Events, r.Data})
	}
	if diff := cmp.Diff(wantEp, sortRegs(critRegs)); diff != "" {
		t.Errorf("crit decodes the epoll's registrations as (-want +got):\n%s", diff)
	}
	if t.Failed() {
		t.Logf("dump log:\n%s", d.log)
	}
}

// critFile is what the tests look at of crit's JSON of a files.img entry.
type critFile struct {
	Type string
	ID   uint32
	Efd  *struct{ Counter uint64 }
	Tfd  *critTimerfd
	Sgfd *struct {
		Flags   uint32
		Sigmask uint64
	}
	Epfd *struct {
		Tfd []struct {
			Tfd    uint32
			Events uint32
			Data   uint64
		}
	}
	Pidfd *struct{ Nspid int32 }
	Isk   *critInetSk
	Psk   *critPacketSk
}

// critInetSk is crit's JSON of an inet socket entry: names for the
// family, type, protocol and state, addresses as text.
type critInetSk struct {
	Family, Type, Proto, State string
	SrcPort                    uint32   `json:"src_port"`
	SrcAddr                    []string `json:"src_addr"`
	Backlog                    uint32
	V6only                     bool
}

// critTimerfd is crit's JSON of a timerfd entry.
type critTimerfd struct {
	Flags, Clockid           uint32
	Ticks                    uint64
	SettimeFlags             uint32 `json:"settime_flags"`
	Vsec, Vnsec, Isec, Insec uint64
}

// critFiles decodes files.img with crit, given flags (--pretty: names
// and addresses as text), by file id.
func critFiles(t *testing.T, dir string, flags ...string) map[uint32]critFile {
	t.Helper()
	out, err := exec.Command("crit", append([]string{"decode", "-i", filepath.Join(dir, "files.img")}, flags...)...).Output()
	if err != nil {
		t.Fatalf("crit decode files.img: %v", err)
	}
	var img struct{ Entries []critFile }
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatalf("crit's files.img JSON: %v", err)
	}
	m := map[uint32]critFile{}
	for _, e := range img.Entries {
		m[e.ID] = e
	}
	return m
}

// TestDumpGoNetpoller checks the epoll and eventfd of the Go runtime's
// netpoller in the images of a Go program.
func TestDumpGoNetpoller(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildGo(t, "./test/subjects/goclock"))
	d := dumpProcess(t, s.Pid, false)
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	var epolls, eventfds []uint32 // descriptors
	for n, e := range im.fds {
		switch e.GetType() {
		case pb.FdTypes_EVENTPOLL:
			epolls = append(epolls, n)
		case pb.FdTypes_EVENTFD:
			eventfds = append(eventfds, n)
		}
	}
	if len(epolls) != 1 || len(eventfds) != 1 {
		t.Fatalf("epoll descriptors %v and eventfds %v, want one of each", epolls, eventfds)
	}
	ep, efd := im.file(t, epolls[0]), im.file(t, eventfds[0])
	// The runtime writes the eventfd to wake the poller and reads it
	// empty when woken: it holds at most a few wake-ups.
	if c := efd.GetEfd().GetCounter(); c > 1000 {
		t.Errorf("the netpoller's eventfd (fd %d) counter is %d", eventfds[0], c)
	}
	// Both close-on-exec, the eventfd non-blocking.
	for _, n := range []uint32{epolls[0], eventfds[0]} {
		if im.fds[n].GetFlags() != unix.FD_CLOEXEC {
			t.Errorf("fd %d is not close-on-exec", n)
		}
	}
	if efd.GetEfd().GetFlags()&unix.O_NONBLOCK == 0 {
		t.Errorf("the netpoller's eventfd is blocking: flags %#o", efd.GetEfd().GetFlags())
	}
	// The epoll watches the eventfd for reading.
	i := slices.IndexFunc(ep.GetEpfd().GetTfd(), func(r *pb.EventpollTfdEntry) bool { return r.GetTfd() == eventfds[0] })
	if i < 0 {
		t.Fatalf("the netpoller's epoll (fd %d) does not watch its eventfd (fd %d): %v", epolls[0], eventfds[0], ep.GetEpfd().GetTfd())
	}
	if ev := ep.GetEpfd().GetTfd()[i].GetEvents(); ev&unix.EPOLLIN == 0 {
		t.Errorf("the netpoller watches its eventfd for events %#x, want EPOLLIN", ev)
	}
	// Every target is a descriptor of the process.
	for _, r := range ep.GetEpfd().GetTfd() {
		if _, ok := im.fds[r.GetTfd()]; !ok {
			t.Errorf("the epoll watches fd %d, which the images lack", r.GetTfd())
		}
	}
}

// TestDumpMovedEpollTarget dumps the epoll subject with a registration
// whose number was closed, or reused for another file, since it was added:
// the images name, as CRIU's do, the descriptor the watched file has moved
// to, which a restore adds it through.
func TestDumpMovedEpollTarget(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range []string{"closed", "reused"} {
		t.Run(mode, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"), mode)
			d := dumpProcess(t, s.Pid, true)
			s.WaitTicks(t, 3)
			critDecode(t, d.dir)
			im := readImages(t, d.dir, s.Pid)
			fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
			want, _ := epollSubjectWants(t, s)
			want = sortRegs(append(want, registration{fd("moved"), unix.EPOLLIN | epollAlways, tagStale | uint64(fd("stale"))}))
			if diff := cmp.Diff(want, imageRegs(t, im.file(t, fd("epfd")))); diff != "" {
				t.Errorf("epfd (fd %d) registrations (-want +got):\n%s", fd("epfd"), diff)
			}
		})
	}
}

// TestDumpRefusesEpollTarget checks that registrations that cannot be
// added again through a descriptor of their file are refused by name, the
// process left as it was: one whose file no descriptor of the process
// holds (the test holds it), and one whose file is registered under the
// descriptor it moved to too.
func TestDumpRefusesEpollTarget(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"orphan", []string{"fd {stale} referred to", "no descriptor holds"}},
		{"twice", []string{"file of fd {moved} twice", "under fd {stale}"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"), tc.mode)
			if tc.mode == "orphan" {
				orphan(t, s)
			}
			r := strings.NewReplacer("{stale}", s.Ready["stale"], "{moved}", s.Ready["moved"], "{epfd}", s.Ready["epfd"])
			var want []string
			for _, w := range append(tc.want, "epoll fd {epfd}") {
				want = append(want, r.Replace(w))
			}
			expectRefused(t, s, dump.Options{LeaveRunning: true}, want...)
		})
	}
}

// orphan takes a duplicate of the epoll subject's orphan eventfd and makes
// it readable, so that the subject closes its own descriptor of it; the
// duplicate stays open until the test ends.
func orphan(t *testing.T, s *testutil.Subject) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(s.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	own, err := unix.PidfdGetfd(pidfd, int(s.ReadyUint(t, "stale")), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(own) })
	if _, err := unix.Write(own, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; s.LastTick()["orphaned"] != "1"; i++ {
		if i == 100 {
			t.Fatalf("the subject never closed the orphan: last tick %v", s.LastTick())
		}
		s.WaitTicks(t, 1)
	}
}

// TestDumpRefusesFileNotAtItsPath dumps descriptors whose file a restore
// could not open at the path /proc shows: a POSIX message queue, its
// name removed or not (its path is in the mqueue filesystem, which is
// mounted nowhere here), and a file a mount has hidden since it was
// opened. Each is refused, naming it, and the subject goes on.
func TestDumpRefusesFileNotAtItsPath(t *testing.T) {
	testutil.RequireRoot(t)
	mqueue := testutil.BuildC(t, "mqueue.c")
	for _, unlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("mqueue unlink=%v", unlink), func(t *testing.T) {
			name := fmt.Sprintf("/cryo-test-%d", os.Getpid())
			args := []string{name}
			if unlink {
				args = append(args, "unlink")
			}
			s := testutil.StartSubject(t, mqueue, args...)
			t.Cleanup(func() { // mq_unlink, through a mount of the queues
				mnt := t.TempDir()
				if err := unix.Mount("mqueue", mnt, "mqueue", 0, ""); err == nil {
					os.Remove(mnt + name)
					unix.Unmount(mnt, unix.MNT_DETACH)
				}
			})
			s.WaitTicks(t, 2)
			expectRefused(t, s, dump.Options{LeaveRunning: true}, "is the POSIX message queue "+name)
		})
	}
	t.Run("hidden by a mount", func(t *testing.T) {
		dir := t.TempDir()
		s := testutil.StartSubject(t, testutil.BuildC(t, "manyfds.c"), dir, "20", "10")
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		s.WaitTicks(t, 2)
		expectRefused(t, s, dump.Options{LeaveRunning: true}, "is not the file the process holds at that path")
	})
}

// TestDumpDevices dumps descriptors of character devices: the memory
// devices, and /dev/kmsg written, are dumped; a device that holds state
// of its own per open (FUSE, tun), and /dev/kmsg read, are refused,
// naming them, and the subject goes on.
func TestDumpDevices(t *testing.T) {
	testutil.RequireRoot(t)
	sleeper := testutil.BuildC(t, "sleeper.c")
	for _, tc := range []struct {
		open string // a shell redirection of fd 3
		want string // in the refusal; "" if dumped
	}{
		{"3</dev/urandom 4>/dev/null 5</dev/zero", ""},
		{"3>/dev/kmsg", ""},
		{"3</dev/kmsg", "reads the kernel log (/dev/kmsg)"},
		{"3<>/dev/fuse", "is the character device /dev/fuse (10:229)"},
		{"3<>/dev/net/tun", "is the character device /dev/net/tun (10:200)"},
	} {
		t.Run(tc.open, func(t *testing.T) {
			if _, err := os.Stat(strings.Fields(strings.TrimLeft(tc.open, "345<>"))[0]); err != nil {
				t.Skipf("no such device here: %v", err)
			}
			s := testutil.StartSubject(t, "/bin/sh", "-c", "exec "+tc.open+` "$0"`, sleeper)
			s.WaitTicks(t, 2)
			if tc.want != "" {
				expectRefused(t, s, dump.Options{LeaveRunning: true}, tc.want)
				return
			}
			log, buf := newLog()
			if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "images"), Log: log, LeaveRunning: true}); err != nil {
				t.Fatalf("dump: %v\nlog:\n%s", err, buf)
			}
		})
	}
}
