package ptrace

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestSeizeNoStop seizes test/subjects/vforker.c's child, which waits in
// vfork and cannot stop: Seize gives up after seizeWait, naming the
// thread and where it sleeps, and its parent runs on. (The thread stays
// attached to the tracer thread, which cannot detach a thread that is not
// stopped, until that thread ends: a cryo command exits at once.)
func TestSeizeNoStop(t *testing.T) {
	testutil.RequireRoot(t)
	defer func(w time.Duration) { seizeWait = w }(seizeWait)
	seizeWait = time.Second
	s := testutil.StartSubject(t, testutil.BuildC(t, "vforker.c"))
	s.WaitTicks(t, 2)
	child := int(s.ReadyUint(t, "child"))
	start := time.Now()
	tr, err := Seize(child, 0)
	if err == nil {
		tr.Detach()
		t.Fatalf("seized pid %d, which waits in vfork", child)
	}
	if !errors.Is(err, ErrNoStop) || !strings.Contains(err.Error(), "tid "+strconv.Itoa(child)) || !strings.Contains(err.Error(), "state D") {
		t.Errorf("seize: %v, want %v naming tid %d in state D", err, ErrNoStop, child)
	}
	if took := time.Since(start); took > 10*seizeWait {
		t.Errorf("seize gave up after %v, want about %v", took, seizeWait)
	}
	t.Logf("refused: %v", err)
	s.WaitTicks(t, 2)
}
