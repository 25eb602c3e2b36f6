package files

import (
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
)

// TestClaims checks which kind of the table records a descriptor: the
// first that claims it.
func TestClaims(t *testing.T) {
	none := fdinfo.FdTypes(-1)
	for _, tc := range []struct {
		link string
		mode uint32
		want fdinfo.FdTypes
	}{
		{"pipe:[1234]", unix.S_IFIFO, fdinfo.FdTypes_PIPE},
		{"anon_inode:[eventfd]", 0, fdinfo.FdTypes_EVENTFD},
		{"anon_inode:[eventpoll]", 0, fdinfo.FdTypes_EVENTPOLL},
		{"/memfd:buf (deleted)", unix.S_IFREG, fdinfo.FdTypes_MEMFD},
		{"/memfd:buf", unix.S_IFREG, fdinfo.FdTypes_REG}, // a file that happens to be called so
		{"/tmp/fifo", unix.S_IFIFO, fdinfo.FdTypes_FIFO},
		{"/tmp/fifo (deleted)", unix.S_IFIFO, fdinfo.FdTypes_FIFO}, // which refuses it
		{"/etc/passwd", unix.S_IFREG, fdinfo.FdTypes_REG},
		{"/tmp/gone (deleted)", unix.S_IFREG, fdinfo.FdTypes_REG},
		{"/tmp", unix.S_IFDIR, fdinfo.FdTypes_REG},
		{"/dev/null", unix.S_IFCHR, fdinfo.FdTypes_REG},
		{"/dev/sda", unix.S_IFBLK, none},
		{"/run/sock", unix.S_IFSOCK, none},
		{"socket:[99]", unix.S_IFSOCK, none},
		{"anon_inode:[timerfd]", 0, fdinfo.FdTypes_TIMERFD},
		{"anon_inode:[signalfd]", 0, fdinfo.FdTypes_SIGNALFD},
		{"anon_inode:inotify", 0, fdinfo.FdTypes_INOTIFY},
		{"anon_inode:[fanotify]", 0, fdinfo.FdTypes_FANOTIFY},
		{"anon_inode:[pidfd]", 0, none},
	} {
		d := &desc{link: tc.link, st: unix.Stat_t{Mode: tc.mode | 0o644}}
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
	seen := map[fdinfo.FdTypes]bool{}
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
