package restore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// registration is one epoll target: the number it was added under, the
// events it waits for and the data it reports.
type registration struct {
	Fd     int
	Events uint32
	Data   uint64
}

// fileState is what the test compares of eventfds and epolls, by
// descriptor number: counters and registrations.
type fileState struct {
	Counters map[int]uint64
	Epolls   map[int][]registration
}

// dumpedFileState reads the eventfds and epolls of a checkpoint.
func dumpedFileState(t *testing.T, c *checkpoint) fileState {
	t.Helper()
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	st := fileState{Counters: map[int]uint64{}, Epolls: map[int][]registration{}}
	for _, fd := range fds {
		f := c.im.files[fd.GetId()]
		switch f.GetType() {
		case pb.FdTypes_EVENTFD:
			st.Counters[int(fd.GetFd())] = f.GetEfd().GetCounter()
		case pb.FdTypes_EVENTPOLL:
			var regs []registration
			for _, tg := range f.GetEpfd().GetTfd() {
				regs = append(regs, registration{int(tg.GetTfd()), tg.GetEvents(), tg.GetData()})
			}
			st.Epolls[int(fd.GetFd())] = sortRegs(regs)
		}
	}
	return st
}

// liveFileState reads the same of the descriptors of a running process.
func liveFileState(t *testing.T, pid int, like fileState) fileState {
	t.Helper()
	st := fileState{Counters: map[int]uint64{}, Epolls: map[int][]registration{}}
	for fd := range like.Counters {
		info, err := proc.ReadFdinfo(pid, fd)
		if err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		ev, err := info.Eventfd()
		if err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		st.Counters[fd] = ev.Count
	}
	for fd := range like.Epolls {
		info, err := proc.ReadFdinfo(pid, fd)
		if err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		tgs, err := info.EpollTargets()
		if err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		var regs []registration
		for _, tg := range tgs {
			regs = append(regs, registration{tg.Fd, tg.Events, tg.Data})
		}
		st.Epolls[fd] = sortRegs(regs)
	}
	return st
}

func sortRegs(r []registration) []registration {
	slices.SortFunc(r, func(a, b registration) int { return a.Fd - b.Fd })
	return r
}

// poke writes a byte into descriptor fd of pid, a pipe's write end, from
// outside.
func poke(t *testing.T, pid, fd int) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	w, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd %d of pid %d: %v", fd, pid, err)
	}
	defer unix.Close(w)
	if _, err := unix.Write(w, []byte{'!'}); err != nil {
		t.Fatalf("write fd %d of pid %d: %v", fd, pid, err)
	}
}

// TestRestoreEventpoll dumps subjects holding eventfds and epolls, restores
// them, and checks that the descriptors come back with their counters and
// registrations, and work: the epoll subject's own checks (what epoll_wait
// reports, counters, flags) pass tick after tick and a write into a
// watched pipe wakes it; the Go subject's timers, which its runtime's
// netpoller drives, keep firing.
func TestRestoreEventpoll(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *subject
		// exact: the process does not change its counters by itself.
		exact bool
		// wake: wake the subject through its empty_w pipe (epoll.c).
		wake bool
	}{
		{"epoll", func(t *testing.T) *subject {
			return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"))}
		}, true, true},
		// A registration whose number was closed, or reused, since: it
		// comes back through the descriptor its file moved to, and the
		// subject checks it reports the file readable.
		{"epoll-closed", func(t *testing.T) *subject {
			return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"), "closed")}
		}, true, true},
		{"epoll-reused", func(t *testing.T) *subject {
			return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"), "reused")}
		}, true, true},
		// The epoll is shared with a child that has closed the files it
		// watches: its registrations come back through the subject's
		// descriptors.
		{"epoll-forked", func(t *testing.T) *subject {
			return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"), "fork")}
		}, true, true},
		{"goclock", func(t *testing.T) *subject { return kind(t, "goclock").start(t) }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.start(t)
			s.WaitTicks(t, 3)
			woken := 0
			if tc.wake {
				poke(t, s.Pid, int(s.ReadyUint(t, "empty_w")))
				woken = waitField(t, s, "woken", func(v int) bool { return v >= 1 })
			}
			c := dumpAndReap(t, s)
			if child, _ := strconv.Atoi(s.Ready["child"]); child != 0 {
				if err := testutil.WaitPidsFree(child); err != nil {
					t.Fatal(err)
				}
				testutil.KillPidsAtCleanup(t, s.Pid, child)
			}
			want := dumpedFileState(t, c)
			if len(want.Epolls) == 0 || len(want.Counters) == 0 {
				t.Fatalf("dumped eventfds %v and epolls %v: want some of each", want.Counters, want.Epolls)
			}
			_, log := restoreSubject(t, s, c, restore.Options{})

			s.WaitTicks(t, 10)
			got := liveFileState(t, s.Pid, want)
			if !tc.exact {
				got.Counters = want.Counters
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("restored eventfds and epolls differ (-dumped +restored):\n%s\nlog:\n%s", diff, log)
			}
			if tc.wake {
				poke(t, s.Pid, int(s.ReadyUint(t, "empty_w")))
				waitField(t, s, "woken", func(v int) bool { return v > woken })
			}
			s.WaitTicks(t, 5)
			for _, tk := range s.TickLines()[c.ticks:] {
				if tk.Fields["pid"] != fmt.Sprint(s.Pid) {
					t.Fatalf("tick %d after the restore says pid=%s, want %d", tk.N, tk.Fields["pid"], s.Pid)
				}
			}
		})
	}
}

// TestRestoreBadEventpollImages restores checkpoints of the epoll subject
// whose eventfds or epolls are broken: each fails with an error that
// names the descriptors and leaves nothing running; the intact images
// restore afterwards.
func TestRestoreBadEventpollImages(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "epoll.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
	restoreBrokenFiles(t, s, c, []brokenFile{
		{name: "epoll target missing", fd: "epfd", image: true, want: []string{"watches fd 999"},
			edit: func(f *pb.FileEntry) { f.GetEpfd().Tfd[0].Tfd = 999 }},
		{name: "epoll without its entry", fd: "sleep_ep", image: true, want: []string{"EVENTPOLL without"},
			edit: func(f *pb.FileEntry) { f.Entry = nil }},
		{name: "eventfd without its entry", fd: "sem", image: true, want: []string{"EVENTFD without"},
			edit: func(f *pb.FileEntry) { f.Entry = nil }},
		{name: "eventfd counter too large", fd: "efd", image: true, want: []string{"counter 0xffffffffffffffff"},
			edit: func(f *pb.FileEntry) { f.GetEfd().Counter = ^uint64(0) }},
		// The kernel refuses an epoll watching itself: found only when the
		// restore registers it.
		{name: "epoll watching itself", fd: "epfd",
			want: []string{fmt.Sprintf("add fd %d to epoll fd %d", fd("epfd"), fd("epfd")), "invalid argument"},
			edit: func(f *pb.FileEntry) { f.GetEpfd().Tfd[0].Tfd = fd("epfd") }},
	})
}

// brokenFile is a checkpoint whose entry of one descriptor is broken.
type brokenFile struct {
	name  string
	fd    string // the descriptor whose entry is broken, by its ready key
	edit  func(f *pb.FileEntry)
	image bool // the error wraps ErrImage
	want  []string
}

// restoreBrokenFiles restores c, a checkpoint of s, broken each way: each
// restore fails with an error that names the descriptor and what is
// wanted, and leaves nothing running; the intact images restore
// afterwards.
func restoreBrokenFiles(t *testing.T, s *subject, c *checkpoint, cases []brokenFile) {
	t.Helper()
	fd := func(k string) uint32 { return uint32(s.ReadyUint(t, k)) }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.Children(t)
			dir := editedFiles(t, c, map[uint32]func(*pb.FileEntry){fd(tc.fd): tc.edit})
			log, buf := newLog()
			_, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log})
			if err == nil {
				s.Restored()
				t.Fatalf("restore of a broken checkpoint succeeded")
			}
			if tc.image && !errors.Is(err, restore.ErrImage) {
				t.Errorf("error %q does not wrap ErrImage\nlog:\n%s", err, buf)
			}
			for _, w := range append(tc.want, fmt.Sprintf("fd %d", fd(tc.fd))) {
				if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Logf("error: %v", err)
			checkNothingLeft(t, before, s.Pid)
		})
	}
	if t.Failed() {
		return
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
}

// editedFiles copies checkpoint c with the file entries of some
// descriptors changed, each by its edit, and returns the copy's directory.
func editedFiles(t *testing.T, c *checkpoint, edits map[uint32]func(f *pb.FileEntry)) string {
	t.Helper()
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint32]func(f *pb.FileEntry){}
	for n, edit := range edits {
		i := slices.IndexFunc(fds, func(e *pb.FdinfoEntry) bool { return e.GetFd() == n })
		if i < 0 {
			t.Fatalf("no fd %d in the images", n)
		}
		byID[fds[i].GetId()] = edit
	}
	dir := copyDir(t, c.dir)
	var msgs []pb.Message
	for _, id := range slices.Sorted(maps.Keys(c.im.files)) {
		f := pb.Clone(c.im.files[id])
		if edit := byID[id]; edit != nil {
			edit(f)
		}
		msgs = append(msgs, f)
	}
	rewriteImage(t, dir, image.Files, 0, msgs...)
	return dir
}

// TestRestoreManyEpollTargets restores test/subjects/scale.c holding an
// epoll that watches 1,000 eventfds, registered in batches of a scratch
// page of events each: every tick the subject checks that the epoll
// reports each eventfd once, with its data.
func TestRestoreManyEpollTargets(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "scale.c", "-pthread"), "epoll", "1000")}
	s.WaitTicks(t, 2)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
}
