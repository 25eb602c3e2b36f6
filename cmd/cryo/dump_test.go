package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// The subjects are children of the test process: it must reap them.
func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// runBinary runs the built cryo and returns its output and exit status.
func runBinary(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run cryo: %v", err)
	}
	return out.String(), errb.String(), code
}

// TestDumpCommand runs `cryo dump --leave-running` on a live process.
func TestDumpCommand(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	dir := filepath.Join(t.TempDir(), "images")
	pid := strconv.Itoa(s.Pid)

	out, errOut, code := runBinary(t, bin, "dump", "-t", pid, "-D", dir, "--leave-running")
	if code != 0 {
		t.Fatalf("cryo dump: exit status %d\n%s", code, errOut)
	}
	want := regexp.MustCompile(`^dumped pid ` + pid + `: 1 processes, 1 threads, \d+ [KMG]iB of memory, frozen \S+\n$`)
	if !want.MatchString(out) {
		t.Errorf("cryo dump printed %q, want a match for %s", out, want)
	}
	s.WaitTicks(t, 10)

	// Images hold the process's secrets: only root may read them.
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("image directory mode %v, want 0700", st.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a regular file with mode 0600", e.Name(), info.Mode())
		}
	}
	for _, n := range []string{"inventory.img", "pstree.img", "core-" + pid + ".img", "mm-" + pid + ".img", "pagemap-" + pid + ".img", "pages-1.img", "files.img"} {
		if !names[n] {
			t.Errorf("no %s among %v", n, names)
		}
	}
}

// TestDumpUsage checks that bad command lines exit with status 2 and say
// what is missing.
func TestDumpUsage(t *testing.T) {
	bin := testutil.BuildGo(t, "./cmd/cryo")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no pid", []string{"dump", "-D", t.TempDir()}, "-t PID"},
		{"no dir", []string{"dump", "-t", "1"}, "-D DIR"},
		{"stray argument", []string{"dump", "-t", "1", "-D", t.TempDir(), "extra"}, `unexpected argument "extra"`},
		{"bad flag", []string{"dump", "--no-such-flag"}, "no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBinary(t, bin, tt.args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "usage: cryo dump") {
				t.Errorf("stderr %q does not say %q and give the usage", errOut, tt.want)
			}
		})
	}
}

// TestDumpErrors checks the failures a user meets first: they say what is
// wrong, and a failed dump removes the directory it made and leaves one
// that existed as it was.
func TestDumpErrors(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	made := filepath.Join(t.TempDir(), "new")
	existing := t.TempDir()
	keep := filepath.Join(existing, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A pid that no process has: above pid_max.
	for _, dir := range []string{made, existing} {
		_, errOut, code := runBinary(t, bin, "dump", "-t", "99999999", "-D", dir)
		if code != 1 || !strings.Contains(errOut, "no such process") {
			t.Errorf("dump of a missing pid into %s: exit status %d, stderr %q; want 1 and \"no such process\"", dir, code, errOut)
		}
	}
	if _, err := os.Stat(made); err == nil {
		t.Errorf("a failed dump left %s behind", made)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Errorf("a failed dump changed %s: %q, %v", keep, b, err)
	}
	// Not root: said before anything starts.
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	open, err := os.MkdirTemp("", "cryo-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	b, err := os.ReadFile(bin)
	if err == nil {
		err = errors.Join(os.Chmod(open, 0o755), os.WriteFile(filepath.Join(open, "cryo"), b, 0o755))
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(open, "cryo"), "dump", "-t", strconv.Itoa(s.Pid), "-D", filepath.Join(open, "x"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "must run as root") {
		t.Errorf("dump as nobody: exit status %d, output %q; want 1 and \"must run as root\"", cmd.ProcessState.ExitCode(), out)
	}
}

// TestDumpUnderSeccompRefused runs `cryo dump` under seccomp itself, where
// the kernel does not let it suspend the filters of a target that has
// some, and the target kills itself for calls the dump would inject: the
// dump fails, saying why, and the target goes on, its images removed.
func TestDumpUnderSeccompRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	wrap := testutil.BuildC(t, "seccomp.c")
	s := testutil.StartSubject(t, wrap, "nommap")
	s.WaitTicks(t, 3)
	dir := filepath.Join(t.TempDir(), "images")
	_, errOut, code := runBinary(t, wrap, "exec", bin, "dump", "-t", strconv.Itoa(s.Pid), "-D", dir)
	if code == 0 || !strings.Contains(errOut, "under seccomp, which cryo must suspend") || !strings.Contains(errOut, "operation not permitted") {
		t.Errorf("cryo dump under seccomp: exit status %d, want a failure saying it cannot suspend seccomp:\n%s", code, errOut)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed dump left its directory: %v", err)
	}
	s.WaitTicks(t, s.Ticks()+5)
}
