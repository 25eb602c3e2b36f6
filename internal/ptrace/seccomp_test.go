//go:build amd64

package ptrace_test

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSeccomp reads the filters of a thread under two
// (test/subjects/seccomp.c stacked), and suspends them: an injected
// system call goes through the filters like the thread's own, until
// SuspendSeccomp; once detached, the thread has its filters again (it
// checks them at every tick).
func TestSeccomp(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "seccomp.c"), "stacked")
	tr, err := ptrace.Seize(s.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Detach() })
	filters, err := tr.SeccompFilters(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// The oldest first: A, then B with SECCOMP_FILTER_FLAG_LOG.
	if len(filters) != 2 || filters[0].Flags != 0 || filters[1].Flags != unix.SECCOMP_FILTER_FLAG_LOG {
		t.Fatalf("filters %+v, want two, the second with SECCOMP_FILTER_FLAG_LOG", filters)
	}
	if len(filters[0].Program) <= len(filters[1].Program) {
		t.Errorf("filter 0 has %d bytes, filter 1 %d: want the older, A, longer", len(filters[0].Program), len(filters[1].Program))
	}
	for i, f := range filters {
		if notifies, err := kernel.SeccompProgram(f.Program); err != nil || notifies {
			t.Errorf("filter %d: notifies %v, %v", i, notifies, err)
		}
	}
	if _, err := tr.Syscall(s.Pid, unix.SYS_GETPPID); !errors.Is(err, unix.EACCES) {
		t.Errorf("injected getppid under the filters: %v, want EACCES", err)
	}
	if err := tr.SuspendSeccomp(); err != nil {
		t.Fatal(err)
	}
	if ppid, err := tr.Syscall(s.Pid, unix.SYS_GETPPID); err != nil || ppid != uint64(os.Getpid()) {
		t.Errorf("injected getppid with seccomp suspended: %d, %v; want %d", ppid, err, os.Getpid())
	}
	detach(t, tr)
	s.WaitTicks(t, s.Ticks()+3)
}
