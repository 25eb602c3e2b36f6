package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadTasksSelf(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tids, err := ReadTasks(0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(tids) || !slices.Contains(tids, os.Getpid()) || !slices.Contains(tids, unix.Gettid()) {
		t.Errorf("ReadTasks(0) = %v; want sorted, with %d and %d", tids, os.Getpid(), unix.Gettid())
	}
	if _, err := ReadTasks(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tasks of a missing process: %v, want ErrNotExist", err)
	}
}

func TestReadIDsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"1", "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := readIDs(dir); !errors.Is(err, ErrSyntax) {
		t.Errorf("readIDs of a non-numeric entry = %v, %v; want ErrSyntax", ids, err)
	}
}

func TestReadSelfFiles(t *testing.T) {
	st, err := ReadStat(0)
	if err != nil {
		t.Fatal(err)
	}
	if comm, err := ReadComm(0); err != nil || comm != st.Comm {
		t.Errorf("ReadComm(0) = %q, %v; want %q", comm, err, st.Comm)
	}
	if args, err := ReadCmdline(0); err != nil || !slices.Equal(args, os.Args) {
		t.Errorf("ReadCmdline(0) = %q, %v; want %q", args, err, os.Args)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		read func(int) (string, error)
		want string
	}{
		{"exe", ReadExe, exe},
		{"cwd", ReadCwd, wd},
		{"root", ReadRoot, "/"},
	} {
		if got, err := tc.read(0); err != nil || got != tc.want {
			t.Errorf("read %s link = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := ReadExe(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exe of a missing process: %v, want ErrNotExist", err)
	}
}

// TestZombie reads the files of a process that has exited but not been
// reaped: it has no memory, no arguments and no fs_struct.
func TestZombie(t *testing.T) {
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Wait()
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if args, err := ReadCmdline(p.Pid); err != nil || args != nil {
		t.Errorf("cmdline = %q, %v; want none", args, err)
	}
	if s, err := ReadStatus(p.Pid); err != nil || s.State != 'Z' || s.Umask != -1 || s.Pid != p.Pid {
		t.Errorf("status = %+v, %v; want a zombie without umask", s, err)
	}
	if s, err := ReadStat(p.Pid); err != nil || s.State != 'Z' || s.StartCode != 0 || s.Comm != "true" {
		t.Errorf("stat = %+v, %v; want a zombie without memory", s, err)
	}
	if smaps, err := ReadSmaps(p.Pid); err != nil || smaps != nil {
		t.Errorf("smaps = %v, %v; want none", smaps, err)
	}
	if a, err := ReadAuxv(p.Pid); err == nil {
		t.Errorf("auxv = %v; want an error", a)
	}
}

func TestReadPids(t *testing.T) {
	pids, err := ReadPids()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(pids) || !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, 1) {
		t.Errorf("ReadPids = %v: want a sorted list with 1 and this process, %d", pids, os.Getpid())
	}
}

// TestReadSecurityLabel reads this process's label, "" without a major
// security module (this kernel has none), and a child's, the same.
func TestReadSecurityLabel(t *testing.T) {
	own, err := ReadSecurityLabel(0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if got, err := ReadSecurityLabel(cmd.Process.Pid); err != nil || got != own {
		t.Errorf("child's label %q (%v), want %q", got, err, own)
	}
	if strings.ContainsAny(own, "\n\x00") {
		t.Errorf("label %q keeps its newline or NULs", own)
	}
}
