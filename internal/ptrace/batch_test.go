//go:build amd64

package ptrace_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/ptrace"
)

// TestSyscalls runs batches longer than one stop holds: the calls run in
// order, the results come back, a failure stops the batch and names the
// call unless it may fail, and the registers are as before.
func TestSyscalls(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		tr := seize(t, s)
		before := allRegs(t, tr)
		const n = 2500 // more than one batch
		calls := make([]ptrace.Sys, 0, 2*n+1)
		for range n {
			calls = append(calls, ptrace.Sys{Nr: unix.SYS_MMAP, Args: [6]uint64{0, 4096, unix.PROT_READ, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, ^uint64(0), 0}})
		}
		// munmap of an unaligned address fails: allowed here.
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_MUNMAP, Args: [6]uint64{1, 4096}, MayFail: true})
		calls = append(calls, ptrace.Sys{Nr: unix.SYS_GETPID})
		if err := tr.Syscalls(s.pid, calls); err != nil {
			t.Fatal(err)
		}
		seen := map[uint64]bool{}
		for i, c := range calls[:n] {
			if c.Failed() != nil || c.Ret == 0 || c.Ret%4096 != 0 || seen[c.Ret] {
				t.Fatalf("call %d: mmap returned %#x (%v)", i, c.Ret, c.Failed())
			}
			seen[c.Ret] = true
			if m, ok := mappingAt(t, s.pid, c.Ret); !ok || m.Perms != "r--p" {
				t.Fatalf("call %d: no r--p mapping at %#x: %+v", i, c.Ret, m)
			}
		}
		if err := calls[n].Failed(); !errors.Is(err, unix.EINVAL) {
			t.Errorf("munmap(1) gave %v, want EINVAL", err)
		}
		if got := calls[n+1].Ret; got != uint64(s.pid) {
			t.Errorf("getpid after a call that may fail = %d, want %d", got, s.pid)
		}

		// Unmap them all, with a failing call in the middle of the
		// second batch: the calls after it do not run.
		unmaps := make([]ptrace.Sys, 0, n)
		for _, c := range calls[:n] {
			unmaps = append(unmaps, ptrace.Sys{Nr: unix.SYS_MUNMAP, Args: [6]uint64{c.Ret, 4096}})
		}
		const bad = 1500
		unmaps[bad].Args[0]++
		err := tr.Syscalls(s.pid, unmaps)
		var se *ptrace.SyscallError
		if !errors.As(err, &se) || se.Index != bad || se.Nr != unix.SYS_MUNMAP || !errors.Is(err, unix.EINVAL) {
			t.Fatalf("batch with a bad munmap at %d: got %v, want a SyscallError at %d, EINVAL", bad, err, bad)
		}
		for i, c := range unmaps {
			_, mapped := mappingAt(t, s.pid, calls[i].Ret)
			if want := i >= bad; mapped != want {
				t.Fatalf("after the failed batch, call %d's page mapped: %v, want %v", i, mapped, want)
			}
			if i == bad {
				continue
			}
			if i < bad && c.Ret != 0 {
				t.Errorf("munmap %d returned %#x", i, c.Ret)
			}
		}
		unmaps[bad].Args[0]--
		if err := tr.Syscalls(s.pid, unmaps[bad:]); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, allRegs(t, tr)); diff != "" {
			t.Errorf("registers changed by batches (-before +after):\n%s", diff)
		}
		detach(t, tr)
		s.count(t, 20)
	})
}
