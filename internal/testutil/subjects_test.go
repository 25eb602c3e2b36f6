package testutil

import (
	"os"
	"strconv"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// TestBuildCached checks that parallel requests for one subject build it
// once, and that other flags make another binary.
func TestBuildCached(t *testing.T) {
	paths := make([]string, 4)
	t.Run("parallel", func(t *testing.T) {
		for i := range paths {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				paths[i] = BuildC(t, "vdsoclock.c")
			})
		}
	})
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Errorf("built twice: %s and %s", paths[0], p)
		}
	}
	if st, err := os.Stat(paths[0]); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("built subject %s: %v, %v", paths[0], st, err)
	}
	if static := BuildC(t, "vdsoclock.c", "-static"); static == paths[0] {
		t.Errorf("-static built into the same binary %s", static)
	}
}

func TestSubject(t *testing.T) {
	s := StartSubject(t, BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 3)
	if !s.Alive() {
		t.Fatal("subject not alive")
	}
	last := s.LastTick()
	if last["pid"] != strconv.Itoa(s.Pid) || last["tick"] == "" {
		t.Errorf("last tick %v, want pid=%d and a number", last, s.Pid)
	}
	if n := s.Ticks(); n < 4 {
		t.Errorf("%d ticks, want at least 4", n)
	}
	s.Kill()
	if s.Alive() {
		t.Error("subject alive after Kill")
	}
	if ws := s.Wait(t); !ws.Signaled() {
		t.Errorf("killed subject: wait status %v", ws)
	}
}

// TestSubjectReady checks the fields of a ready line, and Wait on a
// subject that exits by itself.
func TestSubjectReady(t *testing.T) {
	s := StartSubject(t, "/bin/sh", "-c", "echo ready addr=0x1000 fd=7 word; read x; exit 3")
	if got := s.ReadyUint(t, "addr"); got != 0x1000 {
		t.Errorf("addr=%#x, want 0x1000", got)
	}
	if got := s.ReadyUint(t, "fd"); got != 7 {
		t.Errorf("fd=%d, want 7", got)
	}
	// stdin is /dev/null: the read fails at once and the shell exits.
	if ws := s.Wait(t); !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("wait status %v, want exit status 3", ws)
	}
	if s.Alive() {
		t.Error("subject alive after it exited")
	}
}
