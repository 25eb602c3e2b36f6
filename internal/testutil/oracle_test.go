package testutil

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// recorder is a testing.TB that keeps what CompareStates reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Logf(string, ...any) {}

// TestStateOracle records a stopped process twice, unchanged and then
// with a nice value, a signal ignored... changed from outside: the oracle
// finds nothing the first time and each change the second.
func TestStateOracle(t *testing.T) {
	RequireRoot(t)
	s := StartSubject(t, BuildC(t, "vdsospin.c"))
	before := RecordStopped(t, s.Pid)
	same := &recorder{TB: t}
	CompareStates(same, before, RecordState(t, s.Pid))
	if len(same.errors) > 0 {
		t.Fatalf("the oracle found differences in a stopped process:\n%s", strings.Join(same.errors, "\n"))
	}

	if err := unix.Setpriority(unix.PRIO_PROCESS, s.Pid, 7); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil { // pending: the process is stopped
		t.Fatal(err)
	}
	changed := &recorder{TB: t}
	CompareStates(changed, before, RecordState(t, s.Pid))
	got := strings.Join(changed.errors, "\n")
	for _, want := range []string{
		fmt.Sprintf(`"task/%d/stat/nice"`, s.Pid),
		fmt.Sprintf(`"task/%d/status/ShdPnd"`, s.Pid),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the oracle did not report %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "smaps/") || strings.Contains(got, "fd/") {
		t.Errorf("the oracle reported what did not change:\n%s", got)
	}
}
