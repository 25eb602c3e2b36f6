package restore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/proc"
)

// procState is what /proc shows of a process that a restore must give
// back as it was: the process's identity, memory descriptors, files
// system context and the state of each thread.
type procState struct {
	Exe, Cwd, Root string
	Cmdline        []byte
	Environ        []byte
	Auxv           []byte
	Session, Pgrp  int
	Limits         string
	Personality    string
	// Owner is the owner of /proc/PID/status: root's, rather than the
	// process's, when the process is not dumpable.
	Owner   string
	Threads map[int]threadState
}

// threadState is what /proc shows of one thread.
type threadState struct {
	Name string
	// Status holds the lines of /proc/PID/task/TID/status that a restore
	// brings back (credentials, signal state, ...).
	Status map[string]string
	// Nice, Policy and RTPrio are the scheduling fields of its stat.
	Nice, Policy, RTPrio int64
}

// statusKeys are the lines of a thread's status a restore must give back.
var statusKeys = []string{"Umask", "Uid", "Gid", "Groups", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt",
	"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "THP_enabled"}

func snapshot(t *testing.T, pid int) procState {
	t.Helper()
	p := func(name string) string { return fmt.Sprintf("/proc/%d/%s", pid, name) }
	read := func(name string) []byte {
		b, err := os.ReadFile(p(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	link := func(name string) string {
		s, err := os.Readlink(p(name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	if fi, err := os.Stat(p("status")); err == nil {
		sys := fi.Sys().(*syscall.Stat_t)
		owner = fmt.Sprintf("%d:%d", sys.Uid, sys.Gid)
	}
	s := procState{
		Exe: link("exe"), Cwd: link("cwd"), Root: link("root"),
		Cmdline: read("cmdline"), Environ: read("environ"), Auxv: read("auxv"),
		Session: st.Session, Pgrp: st.Pgrp,
		Limits: string(read("limits")), Personality: strings.TrimSpace(string(read("personality"))),
		Owner:   owner,
		Threads: map[int]threadState{},
	}
	for _, tid := range tasks(t, pid) {
		// A thread may end meanwhile.
		ts, err := proc.ReadTaskStat(pid, tid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		th := threadState{Name: ts.Comm, Status: map[string]string{}, Nice: ts.Nice, Policy: int64(ts.Policy), RTPrio: int64(ts.RTPriority)}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && slices.Contains(statusKeys, k) {
				th.Status[k] = strings.Join(strings.Fields(v), " ")
			}
		}
		s.Threads[tid] = th
	}
	return s
}

// compareState reports how the restored process differs from the dumped
// one; loose allows threads the restored process started since.
func compareState(t *testing.T, before, after procState, loose bool) {
	t.Helper()
	if loose {
		for tid := range after.Threads {
			if _, ok := before.Threads[tid]; !ok {
				delete(after.Threads, tid)
			}
		}
	}
	if d := cmp.Diff(before, after, cmp.Transformer("string", func(b []byte) string { return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})) })); d != "" {
		t.Errorf("the restored process differs from the dumped one (-dumped +restored):\n%s", d)
	}
}
