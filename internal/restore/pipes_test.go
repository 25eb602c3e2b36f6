package restore_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// pipesSubjectFds are the names of test/subjects/pipes.c's descriptors.
var pipesSubjectFds = []string{"pr", "pr_dup", "pr_own", "pw", "pw_dup", "pw_own", "big_r", "big_w", "small_r",
	"pkt_r", "pkt_w", "fifo", "ghost_r", "ghost_w", "wronly"}

// TestRestorePipes checkpoints test/subjects/pipes.c and restores it: its
// own checks (the status flags of each open file description, pipe sizes,
// the data held, the unlinked FIFOs) pass tick after tick; descriptors
// that shared an open file description at the dump share one again, and
// no others do; the unlinked FIFOs come back unlinked.
func TestRestorePipes(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir), dir: dir}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	ids := c.im.cores[c.im.pstree.GetPid()].GetIds()
	fds, err := image.ReadAll[pb.FdinfoEntry](c.im.dir, image.Fdinfo, ids.GetFilesId())
	if err != nil {
		t.Fatal(err)
	}
	fileOf := map[int]uint32{}
	for _, fd := range fds {
		fileOf[int(fd.GetFd())] = fd.GetId()
	}
	// sharing lists the pairs of named descriptors on one open file
	// description.
	sharing := func(same func(a, b int) bool) []string {
		var out []string
		for i, a := range pipesSubjectFds {
			for _, b := range pipesSubjectFds[i+1:] {
				if same(int(s.ReadyUint(t, a)), int(s.ReadyUint(t, b))) {
					out = append(out, a+"="+b)
				}
			}
		}
		return out
	}
	want := sharing(func(a, b int) bool { return fileOf[a] == fileOf[b] })
	if !slices.Equal(want, []string{"pr=pr_dup", "pw=pw_dup"}) {
		t.Fatalf("the images share file entries between %v, want pr=pr_dup and pw=pw_dup", want)
	}

	_, log := restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
	got := sharing(func(a, b int) bool {
		same, err := kernel.SameFile(s.Pid, a, s.Pid, b)
		if err != nil {
			t.Fatalf("kcmp fds %d and %d of pid %d: %v", a, b, s.Pid, err)
		}
		return same
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored descriptors sharing an open file description (-dumped +restored):\n%s\nlog:\n%s", diff, log)
	}
	// The unlinked FIFOs were made again for the restore, and unlinked.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"fifo"}) {
		t.Errorf("the subject's directory holds %v after the restore, want only its FIFO", names)
	}
}

// TestRestoreOutsidePipes checkpoints cat, whose standard input and output
// are pipes whose other ends the test holds, outside the checkpoint, with
// a line cat wrote that the test has not read yet: the restored cat reads
// and writes the same pipes (not new ones whose other end nobody holds,
// where its first write would kill it with SIGPIPE), and the line waiting
// in its output comes once, not again.
func TestRestoreOutsidePipes(t *testing.T) {
	testutil.RequireRoot(t)
	inR, stdin, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	defer stdout.Close()
	// The pipes stay the test's after cat's end: Wait would close those
	// StdinPipe and StdoutPipe make.
	cmd := exec.Command("/bin/cat")
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	testutil.KillPidsAtCleanup(t, pid)
	r := bufio.NewReader(stdout)
	if _, err := io.WriteString(stdin, "before\n"); err != nil {
		t.Fatal(err)
	}
	if l, err := r.ReadString('\n'); l != "before\n" {
		t.Fatalf("cat wrote %q, %v; want %q", l, err, "before\n")
	}
	if _, err := io.WriteString(stdin, "waiting\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testutil.SubjectTimeout); ; time.Sleep(5 * time.Millisecond) {
		if n, err := unix.IoctlGetInt(int(stdout.Fd()), unix.SIOCINQ); err == nil && n == len("waiting\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cat did not write the second line")
		}
	}
	dir := filepath.Join(t.TempDir(), "images")
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: pid, Dir: dir, Log: log}); err != nil {
		t.Fatalf("dump: %v\nlog:\n%s", err, buf)
	}
	cmd.Wait()
	if _, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log}); err != nil {
		t.Fatalf("restore: %v\nlog:\n%s", err, buf)
	}
	if _, err := io.WriteString(stdin, "after\n"); err != nil {
		t.Fatal(err)
	}
	stdout.SetReadDeadline(time.Now().Add(testutil.SubjectTimeout))
	for _, want := range []string{"waiting\n", "after\n"} {
		if l, err := r.ReadString('\n'); l != want {
			t.Fatalf("the restored cat wrote %q, %v; want %q\nlog:\n%s", l, err, want, buf)
		}
	}
	stdin.Close()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("the restored cat: %v, %v; want it to exit 0 at the end of its input", ws, err)
	}
}

// TestRestoreAsyncOwner restores test/subjects/pipes.c with signal-driven
// I/O on a pipe (O_ASYNC, its owner the process, signal SIGUSR2) and
// owners on two more: a thread of the process and its process group. The
// restored descriptors have the flag, and the owner, signal and the uids
// it was set with; a thread's owner is set once the thread exists.
func TestRestoreAsyncOwner(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pipes.c"), dir, "async"), dir: dir}
	pr := int(s.ReadyUint(t, "pr"))
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2)
	info, err := proc.ReadFdinfo(s.Pid, pr)
	if err != nil {
		t.Fatal(err)
	}
	if info.Flags&unix.O_ASYNC == 0 {
		t.Errorf("fd %d: flags %#o, no O_ASYNC", pr, info.Flags)
	}
	for _, tc := range []struct {
		fd   string
		want kernel.Owner
	}{
		{"pr", kernel.Owner{Type: kernel.FOwnerPID, Pid: s.Pid, Sig: int(unix.SIGUSR2)}},
		{"big_w", kernel.Owner{Type: kernel.FOwnerTID, Pid: int(s.ReadyUint(t, "owner_tid"))}},
		{"small_r", kernel.Owner{Type: kernel.FOwnerPGRP, Pid: s.Pid}},
	} {
		fd := int(s.ReadyUint(t, tc.fd))
		dup, err := kernel.Getfd(s.Pid, fd)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dup)
		if o, err := kernel.GetOwner(dup); err != nil || o != tc.want {
			t.Errorf("%s (fd %d): owner %+v, %v; want %+v", tc.fd, fd, o, err, tc.want)
		}
	}
}
