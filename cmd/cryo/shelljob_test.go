package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// startOnTerminal runs a shell script on terminal tty, in a session of its
// own whose controlling terminal tty is, as a terminal emulator starts a
// shell; the test's cleanup kills it.
func startOnTerminal(t *testing.T, tty *os.File, script string, args ...string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script}, args...)...)
	cmd.Stdin = tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// waitFor waits until file path holds a match of re and returns it.
func waitFor(t *testing.T, path string, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for {
		b, _ := os.ReadFile(path)
		if m := re.FindStringSubmatch(string(b)); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds no %v:\n%s", path, re, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminalState is what a shell job's terminal must get back.
type terminalState struct {
	Lflag, Iflag uint32
	Min, Time    uint8
	Winsize      unix.Winsize
	Foreground   int
}

func readTerminal(t *testing.T, master *os.File) terminalState {
	t.Helper()
	// On a master, these read its slave's.
	tio, err1 := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS2)
	ws, err2 := unix.IoctlGetWinsize(int(master.Fd()), unix.TIOCGWINSZ)
	fg, err3 := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPGRP)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return terminalState{Lflag: tio.Lflag, Iflag: tio.Iflag, Min: tio.Cc[unix.VMIN], Time: tio.Cc[unix.VTIME], Winsize: *ws, Foreground: fg}
}

// TestRestoreCommandShellJobTerminal runs a subject as the foreground job
// of a job-control shell on a pseudo-terminal, as a user at a terminal
// would, puts the terminal in a raw mode with a window size of its own,
// and dumps the job with --shell-job. Restored with --shell-job by cryo
// run from a shell on another, fresh terminal, the process gets that
// terminal with the dumped settings and window size, and its process
// group, its own again, is the terminal's foreground.
func TestRestoreCommandShellJobTerminal(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	subj := testutil.BuildC(t, "vdsoclock.c")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	oldM, oldS := openPty(t)
	startOnTerminal(t, oldS, `set -m; "$0" >>"$1" 2>&1`, subj, out)
	pid, _ := strconv.Atoi(waitFor(t, out, regexp.MustCompile(`tick \d+ .*pid=(\d+)`))[1])
	t.Cleanup(func() {
		unix.Kill(pid, unix.SIGKILL)
		unix.Wait4(pid, nil, 0, nil)
	})

	tio, err := unix.IoctlGetTermios(int(oldS.Fd()), unix.TCGETS2)
	if err != nil {
		t.Fatal(err)
	}
	tio.Lflag &^= unix.ICANON | unix.ECHO | unix.ISIG
	tio.Iflag &^= unix.ICRNL | unix.IXON
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 3, 7
	ws := &unix.Winsize{Row: 40, Col: 132, Xpixel: 800, Ypixel: 600}
	if err := unix.IoctlSetTermios(int(oldS.Fd()), unix.TCSETS2, tio); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(oldS.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		t.Fatal(err)
	}
	want := readTerminal(t, oldM)
	if want.Foreground != pid {
		t.Fatalf("foreground group %d, want the job's, %d", want.Foreground, pid)
	}
	dir := filepath.Join(tmp, "images")
	if _, errOut, code := runBinary(t, bin, "dump", "-t", strconv.Itoa(pid), "-D", dir, "--shell-job"); code != 0 {
		t.Fatalf("cryo dump --shell-job: exit status %d\n%s", code, errOut)
	}
	if err := testutil.WaitPidFree(pid); err != nil {
		t.Fatal(err)
	}

	newM, newS := openPty(t)
	if readTerminal(t, newM) == want {
		t.Fatal("the new terminal is as the old one already")
	}
	log := filepath.Join(tmp, "restore.log")
	startOnTerminal(t, newS, `"$0" restore -D "$1" -d --shell-job -v 2 2>"$2"; echo "exit $?" >>"$2"; exec sleep 1000`, bin, dir, log)
	if code := waitFor(t, log, regexp.MustCompile(`exit (\d+)`))[1]; code != "0" {
		b, _ := os.ReadFile(log)
		t.Fatalf("cryo restore --shell-job: exit status %s\n%s", code, b)
	}
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); got != newS.Name() {
		t.Errorf("restored stdin is %q, want cryo's terminal %s", got, newS.Name())
	}
	want.Foreground = pid
	if diff := cmp.Diff(want, readTerminal(t, newM)); diff != "" {
		t.Errorf("cryo's terminal after the restore (-dumped +restored):\n%s", diff)
	}
	n := strings.Count(readFile(t, out), "tick ")
	waitFor(t, out, regexp.MustCompile(fmt.Sprintf(`(?s)(tick .*){%d}`, n+5)))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
