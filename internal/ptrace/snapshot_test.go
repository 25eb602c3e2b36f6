//go:build amd64

package ptrace_test

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/cryo-cr/cryo/internal/proc"
)

// TestSnapshot forks a subject into a snapshot child: the child holds the
// memory as it was at the fork while the subject's changes, stays stopped
// while the subject runs on, is a zombie of the subject once killed, and
// the subject's injected wait4 reaps it.
func TestSnapshot(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		tr := seize(t, s)
		addr, err := tr.Scratch(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.WriteMem(addr, []byte("before")); err != nil {
			t.Fatal(err)
		}
		c, err := tr.Snapshot(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		cpid := c.Pid()
		if st, err := proc.ReadStat(cpid); err != nil || st.PPid != s.pid || st.State != 't' {
			t.Errorf("snapshot child: parent %d, state %c (%v), want %d, t", st.PPid, st.State, err, s.pid)
		}
		if err := tr.WriteMem(addr, []byte("after!")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 6)
		if err := c.ReadMem(addr, got); err != nil || string(got) != "before" {
			t.Errorf("snapshot child reads %q (%v), want %q", got, err, "before")
		}
		detach(t, tr)
		s.count(t, 3)
		if st := state(t, cpid, cpid); st != 't' {
			t.Errorf("snapshot child in state %c while the subject runs, want t", st)
		}
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		if st, err := proc.ReadStat(cpid); err != nil || st.PPid != s.pid || st.State != 'Z' {
			t.Errorf("killed snapshot child: parent %d, state %c (%v), want a zombie of %d", st.PPid, st.State, err, s.pid)
		}
		tr = seize(t, s)
		if err := tr.ReapSnapshot(s.pid, cpid); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(proc.Path(cpid, "")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("snapshot child %d still there after the reap: %v", cpid, err)
		}
		// Reaped already: no error.
		if err := tr.ReapSnapshot(s.pid, cpid); err != nil {
			t.Error(err)
		}
		detach(t, tr)
		s.count(t, 3)
	})
}
