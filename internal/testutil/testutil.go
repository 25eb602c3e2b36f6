// Package testutil owns what cryo's tests on real processes share: skipping
// tests that need root, and running a test binary as a child subreaper that
// leaves no process behind.
package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (ptrace of any process, set_tid, namespaces, prctl); run the tests as root")
	}
}

// Run runs the tests of m as a child subreaper, so that a subject orphaned
// by the death of its parent is re-parented to the test binary rather than
// to PID 1, which on the CI machines never reaps; then it kills and reaps
// every child left and returns the exit code. Call it from TestMain:
//
//	os.Exit(testutil.Run(m))
func Run(m *testing.M) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "testutil: become child subreaper: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := reapChildren(); err != nil {
		fmt.Fprintf(os.Stderr, "testutil: %v\n", err)
		code = 1
	}
	return code
}

// reapChildren kills every child of this process and waits for them all.
func reapChildren() error {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil && st.PPid == self {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	for {
		_, err := unix.Wait4(-1, nil, unix.WALL, nil)
		switch err {
		case nil, unix.EINTR:
		case unix.ECHILD:
			return nil
		default:
			return fmt.Errorf("reap children: %w", err)
		}
	}
}

// ReserveHugePages has the kernel keep at least n huge pages of the
// default size (vm.nr_hugepages) until the test ends.
func ReserveHugePages(t testing.TB, n int) {
	t.Helper()
	const knob = "/proc/sys/vm/nr_hugepages"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	have, err := strconv.Atoi(strings.TrimSpace(string(old)))
	if err != nil {
		t.Fatalf("%s: %v", knob, err)
	}
	if have >= n {
		return
	}
	if err := os.WriteFile(knob, []byte(strconv.Itoa(n)), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(knob, old, 0); err != nil {
			t.Errorf("restore %s: %v", knob, err)
		}
	})
	// The kernel may find fewer free.
	got, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := strconv.Atoi(strings.TrimSpace(string(got))); g < n {
		t.Fatalf("%s: %d huge pages kept, want %d", knob, g, n)
	}
}
