package files

import (
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// TestClaims checks which kind of the table records a descriptor: the
// first that claims it.
func TestClaims(t *testing.T) {
	none := pb.FdTypes(-1)
	for _, tc := range []struct {
		link string
		mode uint32
		want pb.FdTypes
		rdev uint64
	}{
		{"pipe:[1234]", unix.S_IFIFO, pb.FdTypes_PIPE, 0},
		{"anon_inode:[eventfd]", 0, pb.FdTypes_EVENTFD, 0},
		{"anon_inode:[eventpoll]", 0, pb.FdTypes_EVENTPOLL, 0},
		{"/memfd:buf (deleted)", unix.S_IFREG, pb.FdTypes_MEMFD, 0},
		{"/memfd:buf", unix.S_IFREG, pb.FdTypes_REG, 0},            // a file that happens to be called so
		{"/dev/zero (deleted)", unix.S_IFREG, pb.FdTypes_MEMFD, 0}, // shared anonymous memory
		{"/tmp/fifo", unix.S_IFIFO, pb.FdTypes_FIFO, 0},
		{"/tmp/fifo (deleted)", unix.S_IFIFO, pb.FdTypes_FIFO, 0}, // which refuses it
		{"/etc/passwd", unix.S_IFREG, pb.FdTypes_REG, 0},
		{"/tmp/gone (deleted)", unix.S_IFREG, pb.FdTypes_REG, 0},
		{"/tmp", unix.S_IFDIR, pb.FdTypes_REG, 0},
		{"/dev/null", unix.S_IFCHR, pb.FdTypes_REG, unix.Mkdev(1, 3)},
		{"/dev/ptmx", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(5, 2)},
		{"/dev/pts/ptmx", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(5, 2)},
		{"/dev/pts/3", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(136, 3)},
		{"/dev/pts/300", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(136, 300)},
		{"/dev/tty", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(5, 0)},
		{"/dev/console", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(5, 1)},
		{"/dev/tty1", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(4, 1)},
		{"/dev/ttyS0", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(4, 64)},
		{"/dev/pts/3 (deleted)", unix.S_IFCHR, pb.FdTypes_TTY, unix.Mkdev(136, 3)}, // which refuses it
		{"/dev/ptmx", unix.S_IFBLK, none, unix.Mkdev(5, 2)},
		{"/dev/sda", unix.S_IFBLK, none, 0},
		{"/run/sock", unix.S_IFSOCK, none, 0},
		{"socket:[99]", unix.S_IFSOCK, none, 0},
		{"anon_inode:[timerfd]", 0, pb.FdTypes_TIMERFD, 0},
		{"anon_inode:[signalfd]", 0, pb.FdTypes_SIGNALFD, 0},
		{"anon_inode:inotify", 0, pb.FdTypes_INOTIFY, 0},
		{"anon_inode:[fanotify]", 0, pb.FdTypes_FANOTIFY, 0},
		{"anon_inode:[pidfd]", 0, pb.FdTypes_PIDFD, 0},
		{"anon_inode:[io_uring]", 0, pb.FdTypes_EXT, 0},
	} {
		d := &desc{link: tc.link, st: unix.Stat_t{Mode: tc.mode | 0o644, Rdev: tc.rdev}}
		got := none
		for _, k := range kinds {
			if k.claims(d) {
				got = k.typ()
				break
			}
		}
		if got != tc.want {
			t.Errorf("%s (mode %#o): claimed by %v, want %v", tc.link, tc.mode, got, tc.want)
		}
	}
}

// TestKindsTable checks that each file type has one kind.
func TestKindsTable(t *testing.T) {
	seen := map[pb.FdTypes]bool{}
	for _, k := range kinds {
		if seen[k.typ()] {
			t.Errorf("two kinds for %v", k.typ())
		}
		seen[k.typ()] = true
		if got, ok := kindOf(k.typ()); !ok || got != k {
			t.Errorf("kindOf(%v) = %v, %v", k.typ(), got, ok)
		}
	}
}
