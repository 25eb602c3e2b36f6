// Package demo owns cryo demo: a built-in subject (cryo itself, re-executed)
// that prints the time and a counter, and the walkthrough that checkpoints
// it, restores it through the vDSO proxy, and shows it still counting with
// the right time.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
)

const subjectEnv = "CRYO_DEMO_SUBJECT"

// MaybeRunSubject runs the demo subject instead of cryo when cryo was
// started as one; main calls it first.
func MaybeRunSubject() {
	if os.Getenv(subjectEnv) == "" {
		return
	}
	subject()
}

// subject counts every 100 ms and prints the time it reads through the
// vDSO (time.Now) next to the one the system call gives: after a restore
// through the proxy the two must still agree. It uses no Go timers, only
// sleeps, so the runtime holds no descriptors cryo cannot checkpoint yet.
func subject() {
	w := bufio.NewWriter(os.Stdout)
	for n := 0; ; n++ {
		now := time.Now()
		sys := rawRealtime()
		verdict := "ok"
		if d := now.Sub(sys); d > 50*time.Millisecond || d < -50*time.Millisecond {
			verdict = fmt.Sprintf("WRONG TIME (off by %v)", d)
		}
		fmt.Fprintf(w, "count %4d  pid %d  time %s  %s\n", n, os.Getpid(), now.Format("15:04:05.000"), verdict)
		w.Flush()
		unix.Nanosleep(&unix.Timespec{Nsec: 100e6}, nil)
	}
}

// rawRealtime reads CLOCK_REALTIME with the system call itself, bypassing
// the vDSO.
func rawRealtime() time.Time {
	var ts unix.Timespec
	unix.Syscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_REALTIME, uintptr(timespecPtr(&ts)), 0)
	return time.Unix(ts.Sec, ts.Nsec)
}

// Run walks through a checkpoint and a restore of the demo subject,
// narrating on w.
func Run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "cryo-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The subject is our child; a killed one must be reaped for its PID
	// to be free again.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a subreaper: %w", err)
	}
	outPath := filepath.Join(dir, "subject.out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), subjectEnv+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the demo subject: %w", err)
	}
	pid := cmd.Process.Pid
	restored := false
	defer func() {
		unix.Kill(pid, unix.SIGKILL)
		if restored {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		} else {
			cmd.Wait()
		}
	}()

	fmt.Fprintf(w, "== started the demo subject, pid %d: it counts and prints the time it reads through the vDSO\n", pid)
	tail := &tailer{path: outPath, w: w}
	if err := tail.follow(ctx, 1200*time.Millisecond); err != nil {
		return err
	}

	images := filepath.Join(dir, "images")
	fmt.Fprintf(w, "\n== cryo dump -t %d -D %s\n", pid, images)
	st, err := dump.Dump(ctx, dump.Options{Pid: pid, Dir: images})
	if err != nil {
		return err
	}
	cmd.Wait() // reap: the PID must be free to restore into
	fmt.Fprintf(w, "checkpointed %d threads and %d MiB of memory in %v; the process is gone:\n",
		st.Threads, st.Pages*kernel.PageSize>>20, st.Total.Round(time.Millisecond))
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "  /proc/%d does not exist\n", pid)
	}
	last := tail.lastCount
	time.Sleep(time.Second)

	fmt.Fprintf(w, "\n== cryo restore -D %s --vdso=proxy   (a second later)\n", images)
	rs, err := restore.Restore(ctx, restore.Options{Dir: images, VDSO: restore.VDSOProxy})
	if err != nil {
		return err
	}
	restored = true
	fmt.Fprintf(w, "restored pid %d in %v, its vDSO calls now going through the proxy\n", rs.Pid, rs.Total.Round(time.Millisecond))
	if err := tail.follow(ctx, 1500*time.Millisecond); err != nil {
		return err
	}
	switch {
	case tail.wrong:
		return errors.New("the restored process read a wrong time")
	case tail.lastCount <= last:
		return fmt.Errorf("the restored process did not count on (last count %d before, %d after)", last, tail.lastCount)
	}
	fmt.Fprintf(w, "\nThe same process (pid %d) went on counting from %d with the right time after its restore.\n", rs.Pid, last)
	return nil
}

// tailer prints the new lines of the subject's output as they come.
type tailer struct {
	path      string
	w         io.Writer
	off       int64
	lastCount int
	wrong     bool
}

func (t *tailer) follow(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := os.ReadFile(t.path)
		if err != nil {
			return err
		}
		if i := strings.LastIndexByte(string(b), '\n'); int64(i+1) > t.off {
			for _, line := range strings.Split(string(b[t.off:i]), "\n") {
				fmt.Fprintf(t.w, "  %s\n", line)
				if f := strings.Fields(line); len(f) > 1 && f[0] == "count" {
					t.lastCount, _ = strconv.Atoi(f[1])
				}
				t.wrong = t.wrong || strings.Contains(line, "WRONG")
			}
			t.off = int64(i + 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
