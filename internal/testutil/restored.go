package testutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// Restore tests take a subject through a dump that kills it and a
// restore that brings it back with the same PID, as a child of the test
// process (the restore clones it with CLONE_PARENT). The Subject keeps
// watching the same output file, which the restored process goes on
// writing; ReapDumped and Restored switch it from the first process to
// the second.

// ReapDumped waits for the subject, which a dump has killed, to end, reaps
// it, and waits until its PID is free again, so that a restore can have
// it. It returns how the subject ended.
func (s *Subject) ReapDumped(t testing.TB) unix.WaitStatus {
	t.Helper()
	ws := s.Wait(t)
	if err := WaitPidFree(s.Pid); err != nil {
		t.Fatal(err)
	}
	return ws
}

// Restored tells s that a restore brought its process back with the same
// PID: Alive, WaitTicks, Wait and Kill (which the test's cleanup runs)
// now watch the restored process. The original must have been reaped
// (ReapDumped).
func (s *Subject) Restored() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reaped, s.status = false, 0
}

// WaitPidFree waits up to SubjectTimeout until no task has pid: its
// /proc entry is gone.
func WaitPidFree(pid int) error {
	deadline := time.Now().Add(SubjectTimeout)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still exists after %v", pid, SubjectTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitPidsFree waits up to SubjectTimeout until no task has any of pids,
// reaping those that become this process's zombies: the processes of a
// dumped tree, orphaned when the dump killed its root, are handed to the
// tests' child subreaper.
func WaitPidsFree(pids ...int) error {
	deadline := time.Now().Add(SubjectTimeout)
	for _, pid := range pids {
		for {
			unix.Wait4(pid, nil, unix.WALL|unix.WNOHANG, nil)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d still exists after %v", pid, SubjectTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// KillPidsAtCleanup kills the processes pids when the test ends, and
// waits until they are gone (reaping those that are the test process's):
// the members of a tree outlive its root for a moment, and a later test
// must not find them. A process is killed if it is the one that had the
// pid when KillPidsAtCleanup was called (its start time tells), or one
// under the test process (restored with that pid): a test run makes
// enough processes for pid numbers to wrap, and by then a pid may be
// another package's process, which must be left alone.
func KillPidsAtCleanup(t testing.TB, pids ...int) {
	starts := map[int]uint64{}
	for _, pid := range pids {
		if st, err := proc.ReadStat(pid); err == nil {
			starts[pid] = st.StartTime
		}
	}
	ours := func(pid int) bool {
		st, err := proc.ReadStat(pid)
		return err == nil && (st.StartTime == starts[pid] || descendant(pid))
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			if ours(pid) {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		deadline := time.Now().Add(SubjectTimeout)
		for _, pid := range pids {
			for {
				unix.Wait4(pid, nil, unix.WALL|unix.WNOHANG, nil)
				if !ours(pid) {
					break // gone, or another's pid now
				}
				if time.Now().After(deadline) {
					t.Errorf("pid %d still exists after %v", pid, SubjectTimeout)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
}

// descendant reports whether process pid is a descendant of the test
// process.
func descendant(pid int) bool {
	self := os.Getpid()
	for range 64 {
		st, err := proc.ReadStat(pid)
		if err != nil || st.PPid <= 1 {
			return false
		}
		if st.PPid == self {
			return true
		}
		pid = st.PPid
	}
	return false
}

// Tick is one tick line of a subject: its number and key=value fields.
type Tick struct {
	N      int
	Fields map[string]string
}

// TickLines returns every successful tick line printed so far, in order.
func (s *Subject) TickLines() []Tick {
	var out []Tick
	for _, l := range s.lines() {
		if !isTick(l) {
			continue
		}
		var n int
		fmt.Sscanf(l, "tick %d", &n)
		out = append(out, Tick{N: n, Fields: Fields(l)})
	}
	return out
}

// Children lists the processes whose parent is the test process, zombies
// included, with their name and state: what a failed restore must not
// leave behind.
func Children(t testing.TB) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	out := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil && st.PPid == self {
			out[pid] = fmt.Sprintf("%s (state %c)", st.Comm, st.State)
		}
	}
	return out
}
