// Package check owns `cryo check`: it tries, for real, every kernel feature
// cryo relies on, and says which are missing.
//
// Each probe runs in a child process, the running binary re-executed with
// an environment variable naming the probe, so that a probe that hangs can
// be killed and one that changes its own process (a new time namespace for
// its children, its mm fields) leaves cryo as it was. Binaries that call Run must call
// MaybeRunChild first thing in main (or TestMain).
package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// probe is one feature check.
type probe struct {
	name string
	// need says what cryo cannot do without the feature.
	need string
	// run tries the feature; it runs in a child process.
	run func() error
}

var probes = []probe{
	{"ptrace seize/interrupt", "to freeze a process", probeSeize},
	{"ptrace syscall injection", "to read task state and build restored processes", probeInject},
	{"PTRACE_GET_RSEQ_CONFIGURATION", "to dump rseq registrations", probeRseq},
	{"PTRACE_O_SUSPEND_SECCOMP", "to dump and restore processes under seccomp", probeSuspendSeccomp},
	{"process_vm_readv/writev", "to dump and restore memory", probeProcessVM},
	{"pidfd_open/pidfd_getfd", "to dump file descriptors", probePidfd},
	{"clone3 with set_tid", "to restore PIDs and TIDs", probeClone3},
	{"prctl PR_SET_MM_MAP", "to restore a process's mm fields and auxv", probeMmMap},
	{"userfaultfd", "for lazy restore", probeUserfaultfd},
	{"time namespaces", "to restore monotonic and boot-time clocks", probeTimens},
	{"vDSO layout", "to compare the dumped vDSO with the running kernel's", probeVDSOLayout},
	{"vDSO mremap", "to put the vDSO back at its dumped address", probeVDSOMremap},
}

// timeout bounds each probe.
const timeout = 10 * time.Second

// Run tries every feature, writes a line per feature to w as each
// finishes, then a verdict, and reports whether everything works.
func Run(w io.Writer) bool {
	return runProbes(w, probes, timeout)
}

func runProbes(w io.Writer, ps []probe, timeout time.Duration) bool {
	var failed []probe
	for _, p := range ps {
		err := runChild(p.name, timeout)
		printResult(w, p.name, err)
		if err != nil {
			failed = append(failed, p)
		}
	}
	printVerdict(w, failed, len(ps))
	return len(failed) == 0
}

// runChild runs one probe in a child process and returns its error.
func runChild(name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("timed out after %v", timeout)
	case err == nil:
		return nil
	}
	// The child's first line of stderr is its error (or a panic's).
	msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
	if msg == "" {
		msg = err.Error()
	}
	return errors.New(msg)
}

// resultColumn is where "ok" and "FAILED" start.
const resultColumn = 40

func printResult(w io.Writer, name string, err error) {
	dots := strings.Repeat(".", max(resultColumn-len(name)-2, 3))
	if err != nil {
		fmt.Fprintf(w, "%s %s FAILED: %v\n", name, dots, err)
		return
	}
	fmt.Fprintf(w, "%s %s ok\n", name, dots)
}

func printVerdict(w io.Writer, failed []probe, total int) {
	if len(failed) == 0 {
		fmt.Fprintln(w, "Looks good.")
		return
	}
	fmt.Fprintf(w, "\n%d of %d checks failed. cryo needs:\n", len(failed), total)
	for _, p := range failed {
		fmt.Fprintf(w, "  %s %s\n", p.name, p.need)
	}
}
