package dump_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpSeccomp dumps, leaving them running, processes under seccomp
// (test/subjects/seccomp.c): each thread's mode and filters, the oldest
// first, with their flags, are in its core and seccomp.img as CRIU lays
// them out, crit reads them, and the process goes on with its filters
// (it checks them at every tick). One of them kills itself for munmap,
// mprotect and prctl, which the dump injects: seccomp is suspended for
// the dump.
func TestDumpSeccomp(t *testing.T) {
	testutil.RequireRoot(t)
	const (
		tsync = "+tsync"
		a     = "getppid:errno1,getsid:errno2"
		b     = "getppid:errno13"
		c     = "getppid:errno2"
		d     = "getsid:errno9"
		n     = "mmap:errno1,munmap:kill,mprotect:kill,prctl:kill"
	)
	for _, tc := range []struct {
		mode string
		// want is what each thread has, the leader first, then the others
		// in the order the subject started them.
		want []string
	}{
		{"stacked", []string{"filter " + a + tsync + " " + b + "+log" + tsync}},
		{"threads", []string{"filter " + a + " " + b, "filter " + c, "filter " + a + " " + b + " " + d}},
		// Every thread has the same filters: the leader installs them for
		// all.
		{"tsync", []string{"filter " + a + tsync + " " + b + tsync, "none", "none"}},
		{"strict", []string{"none", "strict"}},
		{"strictleader", []string{"strict", "none"}},
		{"nommap", []string{"filter " + n + tsync}},
		{"nonnp", []string{"filter " + a + tsync + " " + b + tsync}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), tc.mode)
			s.WaitTicks(t, 3)
			dir := filepath.Join(t.TempDir(), "images")
			log, buf := newLog()
			if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true, Log: log}); err != nil {
				t.Fatalf("dump: %v\nlog:\n%s", err, buf)
			}
			s.WaitTicks(t, s.Ticks()+3)
			c := testutil.ReadCheckpoint(t, dir, s.Pid)
			var filters []*pb.SeccompFilter
			if strings.HasPrefix(tc.want[0], "filter") || len(tc.want) > 2 {
				entry := &pb.SeccompEntry{}
				if err := c.Dir.ReadImage(image.Seccomp, 0, entry); err != nil {
					t.Fatal(err)
				}
				filters = entry.SeccompFilters
			}
			var got []string
			for _, tid := range c.Pstree.Threads {
				got = append(got, describeSeccomp(t, c.Cores[tid].ThreadCore, filters))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("seccomp of each thread (-want +got):\n%s", d)
			}
			critDecode(t, dir)
		})
	}
}

// TestDumpRefusesSeccompListener dumps a process with a filter that hands
// a system call to a listener: the listener is another descriptor, which
// no image holds, so the dump refuses, naming it, and the process goes
// on.
func TestDumpRefusesSeccompListener(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), "listener")
	s.WaitTicks(t, 3)
	expectRefused(t, s, dump.Options{}, "seccomp filter 0", "SECCOMP_RET_USER_NOTIF")
}

// describeSeccomp says what a thread core and the filters of seccomp.img
// give the thread: "none", "strict", or "filter" and its filters, the
// oldest first, following prev as CRIU's restore does.
func describeSeccomp(t *testing.T, tc *pb.ThreadCoreEntry, filters []*pb.SeccompFilter) string {
	t.Helper()
	switch tc.GetSeccompMode() {
	case pb.SeccompMode_disabled:
		return "none"
	case pb.SeccompMode_strict:
		return "strict"
	}
	out := "filter"
	if tc.SeccompFilter == nil {
		t.Fatal("filter mode without a filter")
	}
	for at := tc.GetSeccompFilter(); ; at = filters[at].GetPrev() {
		if int(at) >= len(filters) || strings.Count(out, " ") > len(filters) {
			t.Fatalf("filter %d of %d: a broken chain after %q", at, len(filters), out)
		}
		f := filters[at]
		out += " " + describeProgram(t, f.Filter)
		if f.GetFlags()&unix.SECCOMP_FILTER_FLAG_LOG != 0 {
			out += "+log"
		}
		if f.GetFlags()&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 {
			out += "+tsync"
		}
		if f.Prev == nil {
			break
		}
	}
	return out
}

// describeProgram lists the rules of a filter made by seccomp.c's
// install: after its 4-instruction check of the architecture and load of
// the call's number, a jump and a return for each rule, then "allow".
func describeProgram(t *testing.T, prog []byte) string {
	t.Helper()
	names := map[uint32]string{unix.SYS_GETPPID: "getppid", unix.SYS_GETSID: "getsid", unix.SYS_MMAP: "mmap",
		unix.SYS_MUNMAP: "munmap", unix.SYS_MPROTECT: "mprotect", unix.SYS_PRCTL: "prctl"}
	k := func(i int) uint32 { return binary.LittleEndian.Uint32(prog[8*i+4:]) }
	n := len(prog) / 8
	if len(prog)%8 != 0 || n < 5 || (n-5)%2 != 0 || k(n-1) != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("not a program of seccomp.c: %x", prog)
	}
	var rules []string
	for i := 4; i < n-1; i += 2 {
		ret := "kill"
		if r := k(i + 1); r&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO {
			ret = fmt.Sprintf("errno%d", r&unix.SECCOMP_RET_DATA)
		}
		rules = append(rules, names[k(i)]+":"+ret)
	}
	return strings.Join(rules, ",")
}
