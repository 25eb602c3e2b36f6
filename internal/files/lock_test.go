package files

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// TestDumpLocks feeds fdinfo lock lines of every kind the kernel writes,
// this one's and older ones', to the dump: the locks a restore can take
// again become CRIU entries, every other kind is refused by name.
func TestDumpLocks(t *testing.T) {
	const pid, fd = 4242, 7
	entry := func(flag, typ uint32, start, n int64) *pb.FileLockEntry {
		return &pb.FileLockEntry{Flag: flag, Type: typ, Pid: pid, Fd: fd,
			Start: start, Len: n}
	}
	for _, tc := range []struct {
		line string
		want *pb.FileLockEntry
		err  string // in the refusal
	}{
		{line: "1: POSIX  ADVISORY  WRITE 4242 fe:00:5 0 9", want: entry(flPOSIX, 1, 0, 10)},
		{line: "1: POSIX  ADVISORY  READ 4242 fe:00:5 100 EOF", want: entry(flPOSIX, 0, 100, 0)},
		{line: "1: OFDLCK ADVISORY  WRITE -1 fe:00:5 5 5", want: entry(flOFD, 1, 5, 1)},
		{line: "1: FLOCK  ADVISORY  READ 99 fe:00:5 0 EOF", want: entry(flFlock, 0, 0, 0)}, // taken by a parent
		{line: "1: LEASE  ACTIVE    READ 4242 fe:00:5 0 EOF", want: entry(flLease, 0, 0, 0)},
		{line: "1: LEASE  ACTIVE    WRITE 4242 fe:00:5 0 EOF", want: entry(flLease, 1, 0, 0)},
		{line: "1: LEASE  BREAKING  UNLCK 4242 fe:00:5 0 EOF", err: "lease being broken"},
		{line: "1: LEASE  BREAKING  READ 4242 fe:00:5 0 EOF", err: "lease being broken"},
		{line: "1: LEASE  ACTIVE    UNLCK 4242 fe:00:5 0 EOF", err: "lease in state ACTIVE UNLCK"},
		{line: "1: DELEG  ACTIVE    READ 4242 fe:00:5 0 EOF", err: "delegation"},
		{line: "1: POSIX  MANDATORY WRITE 4242 fe:00:5 0 EOF", err: "mandatory lock"},
		{line: "1: FLOCK  MSNFS     RW    4242 fe:00:5 0 EOF", err: "mandatory lock"},
		{line: "1: ACCESS ADVISORY  READ 4242 fe:00:5 0 EOF", err: "lock of class ACCESS"},
		{line: "1: UNKNOWN UNKNOWN  READ 4242 fe:00:5 0 EOF", err: "lock of class UNKNOWN"},
		{line: "1: POSIX  *NOINODE* READ 4242 <none>:0 0 EOF", err: "in state *NOINODE* READ"},
		{line: "1: POSIX  ADVISORY  WRITE 77 fe:00:5 0 9", err: "POSIX lock of another process"},
		// Words of a kernel yet to come.
		{line: "1: LOCKF  ADVISORY  WRITE 4242 fe:00:5 0 9", err: "lock of class LOCKF"},
		{line: "1: POSIX  SOMETIMES WRITE 4242 fe:00:5 0 9", err: "in state SOMETIMES WRITE"},
		{line: "1: FLOCK  ADVISORY  EXCL 4242 fe:00:5 0 EOF", err: "in state ADVISORY EXCL"},
	} {
		tb := NewTable(pid, false, false)
		_, err := tb.dumpLocks(fd, proc.Fdinfo{Extra: []proc.KeyValue{{Key: "lock", Value: tc.line}}})
		switch {
		case tc.err != "":
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "fd 7") {
				t.Errorf("%q: %v, want ErrUnsupported saying %q and the fd", tc.line, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.line, err)
		default:
			if d := cmp.Diff([]*pb.FileLockEntry{tc.want}, tb.locks); d != "" {
				t.Errorf("%q: (-want +got):\n%s", tc.line, d)
			}
		}
	}
}
