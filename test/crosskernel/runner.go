package crosskernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// RunnerOptions tune how long subjects are watched.
type RunnerOptions struct {
	// Settle is the number of good ticks a subject prints before its dump.
	Settle int `json:"settle"`
	// Watch and WatchTicks: a restored process is watched for at least
	// Watch and until it has printed at least WatchTicks good ticks.
	Watch      time.Duration `json:"watch"`
	WatchTicks int           `json:"watch_ticks"`
	// Timeout bounds each wait for ticks and each cryo command.
	Timeout time.Duration `json:"timeout"`
}

// DefaultRunnerOptions watch a restored subject for about 50 ticks.
var DefaultRunnerOptions = RunnerOptions{Settle: 10, Watch: time.Second, WatchTicks: 50, Timeout: 90 * time.Second}

// Runner runs jobs on the kernel it runs on.
type Runner struct {
	Root    string
	Kernel  string // label
	Release string // uname -r
	Opts    RunnerOptions
	// Guest allows the runner to choose PIDs through ns_last_pid: only a
	// guest's init may do that without racing the rest of the machine.
	Guest bool
	// HoldPids, if set, is called after a dump with the IDs of the
	// dumped tree's processes and threads, which are free again, to keep them for a restore here.
	HoldPids func(ids []int) error
	// FreePid, if set, is called before the restore of a process dumped
	// as pid, to free the PIDs held for it (HoldPids).
	FreePid func(pid int) error
	// Log receives a line per step; nil discards.
	Log io.Writer
}

// Release returns uname -r.
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, "[%s] "+format+"\n", append([]any{r.Kernel}, args...)...)
	}
}

func (r *Runner) cryo() string { return filepath.Join(r.Root, binDir, "cryo") }

// Run runs one job and never fails: problems are in the result.
func (r *Runner) Run(ctx context.Context, job Job) Result {
	start := time.Now()
	res := Result{ID: job.ID, Kernel: r.Kernel, Release: r.Release}
	var err error
	switch job.Kind {
	case KindDump:
		err = r.runDump(ctx, job, &res)
	case KindRestore:
		err = r.runRestore(ctx, job, &res)
	default:
		err = fmt.Errorf("unknown job kind %q", job.Kind)
	}
	res.Wall = time.Since(start)
	if err != nil {
		res.Err = fmt.Sprintf("%s on %s (%s): %v", job.ID, r.Kernel, r.Release, err)
		r.logf("%s: FAIL: %v", job.ID, err)
	} else {
		res.OK = true
		r.logf("%s: ok (%v)", job.ID, res.Wall.Round(time.Millisecond))
	}
	return res
}

// runDump starts the subject, lets it tick and dumps it into job.Into.
func (r *Runner) runDump(ctx context.Context, job Job, res *Result) error {
	pid, err := r.start(job)
	if err != nil {
		return err
	}
	res.Pid = pid
	alive := true
	defer func() {
		if alive {
			killAndReap(pid)
		}
	}()
	r.logf("%s: started %s as pid %d", job.ID, filepath.Base(job.Binary), pid)
	if err := r.waitTicks(ctx, pid, job.Out, r.Opts.Settle); err != nil {
		res.Detail = outputTail(job.Out)
		return fmt.Errorf("before the dump: %w", err)
	}
	alive = false
	return r.dump(ctx, job, pid, job.Out, "", res)
}

// dump dumps the running process pid, which writes out, into the artifact
// job.Into, and reaps it.
func (r *Runner) dump(ctx context.Context, job Job, pid int, out, vdsoMode string, res *Result) error {
	tids := taskIDs(pid)
	dir := ArtifactDir(r.Root, job.Into)
	images := artifactImages(r.Root, job.Into)
	if err := os.RemoveAll(dir); err != nil {
		killAndReap(pid)
		return err
	}
	if err := os.MkdirAll(images, 0o755); err != nil {
		killAndReap(pid)
		return err
	}
	logPath := filepath.Join(dir, "dump.log")
	t := time.Now()
	_, err := r.command(ctx, "dump", "-t", strconv.Itoa(pid), "-D", images, "-v", "2", "-o", logPath)
	res.Dump = time.Since(t)
	if err != nil {
		killAndReap(pid)
		res.Detail = fileTail(logPath, 30) + "\n--- output:\n" + outputTail(out)
		return fmt.Errorf("cryo dump of pid %d: %w", pid, err)
	}
	// The dump kills the process; reap it so its PID is free again, and
	// the others of its tree.
	ws, err := reap(pid, r.Opts.Timeout)
	if err != nil {
		killAndReap(pid)
		return fmt.Errorf("after the dump: %w", err)
	}
	below, ids, err := treeIDs(images)
	if err == nil {
		err = freePids(below)
	}
	if err == nil && r.HoldPids != nil {
		if err = r.HoldPids(ids); err == nil {
			r.logf("%s: holding PIDs %v for a restore here", job.ID, ids)
		}
	}
	if err != nil {
		return fmt.Errorf("after the dump: %w", err)
	}
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		res.Detail = outputTail(out)
		return fmt.Errorf("after the dump pid %d ended with %s, want SIGKILL", pid, describe(ws))
	}
	snap, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	p := scanOutput(snap)
	if p.Bad != "" {
		return fmt.Errorf("subject printed %q before the dump", p.Bad)
	}
	if len(p.Ticks) == 0 {
		return errors.New("no tick before the dump")
	}
	last := p.Ticks[len(p.Ticks)-1]
	if err := os.WriteFile(filepath.Join(dir, "out"), snap, 0o644); err != nil {
		return err
	}
	a := &Artifact{Name: job.Into, Subject: job.Subject, Kernel: r.Kernel, Release: r.Release,
		Pid: pid, Tids: tids, Out: out, LastTick: last.N, LastMono: last.Mono, VDSO: vdsoMode}
	r.logf("%s: dumped pid %d (%d threads) in %v", job.ID, pid, len(tids), res.Dump.Round(time.Millisecond))
	return writeArtifact(r.Root, a)
}

// cpuRefusal is in cryo's error when its CPU check refuses a restore
// (internal/cpu.ErrMissingFeatures).
const cpuRefusal = "CPU lacks features the process uses"

// restoredLine is cryo restore -d's report.
var restoredLine = regexp.MustCompile(`restored pid (\d+) \(vDSO (\w+)\)`)

// runRestore restores job.From, watches it, then kills it or dumps it into
// job.Into.
func (r *Runner) runRestore(ctx context.Context, job Job, res *Result) error {
	a, err := ReadArtifact(r.Root, job.From)
	if err != nil {
		return err
	}
	snap, err := os.ReadFile(filepath.Join(ArtifactDir(r.Root, job.From), "out"))
	if err != nil {
		return err
	}
	// The process goes on writing the file it had open: give it back the
	// content it had at the dump.
	if err := os.MkdirAll(filepath.Dir(a.Out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(a.Out, snap, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.Root, logDir), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(r.Root, logDir, strings.ReplaceAll(job.ID, "/", "_")+".log")
	os.Remove(logPath)
	if r.FreePid != nil {
		if err := r.FreePid(a.Pid); err != nil {
			return err
		}
	}
	args := append([]string{"restore", "-D", artifactImages(r.Root, job.From), "-d", "-v", "2", "-o", logPath}, job.RestoreArgs...)
	t := time.Now()
	stdout, err := r.command(ctx, args...)
	if err != nil && job.CPUOverride && strings.Contains(err.Error(), cpuRefusal) {
		// cryo's CPU check did its job; what is tested here is the
		// kernel, so go on without the state this CPU lacks, and say so.
		res.CPURefusal = err.Error()
		r.logf("%s: restoring with --allow-missing-cpu-features: %v", job.ID, err)
		os.Remove(logPath)
		t = time.Now()
		stdout, err = r.command(ctx, append(args, "--allow-missing-cpu-features")...)
	}
	res.Restore = time.Since(t)
	if err != nil {
		res.Detail = fileTail(logPath, 30)
		// A failed restore leaves nothing running, but make sure; the PID
		// may be another process's (a PID in use fails the restore).
		killChild(a.Pid)
		return fmt.Errorf("cryo restore of %s (pid %d, dumped on %s %s): %w", job.From, a.Pid, a.Kernel, a.Release, err)
	}
	m := restoredLine.FindStringSubmatch(stdout)
	if m == nil {
		killChild(a.Pid)
		return fmt.Errorf("cryo restore printed %q, want \"restored pid N (vDSO MODE) ...\"", strings.TrimSpace(stdout))
	}
	pid, _ := strconv.Atoi(m[1])
	res.Pid, res.VDSO = pid, m[2]
	alive := true
	defer func() {
		if alive {
			killAndReap(pid)
		}
	}()
	r.logf("%s: restored pid %d (vDSO %s) in %v", job.ID, pid, res.VDSO, res.Restore.Round(time.Millisecond))
	if pid != a.Pid {
		return fmt.Errorf("restored as pid %d, dumped as %d", pid, a.Pid)
	}
	n, gap, err := r.watch(ctx, a, pid, snap)
	res.Ticks, res.MonoGapNS = n, gap
	if err != nil {
		res.Detail = fileTail(logPath, 30) + "\n--- output:\n" + outputTail(a.Out)
		return fmt.Errorf("restored process (vDSO %s): %w", res.VDSO, err)
	}
	if job.Into == "" {
		alive = false
		if _, err := killAndReap(pid); err != nil {
			return err
		}
		return nil
	}
	alive = false
	return r.dump(ctx, job, pid, a.Out, res.VDSO, res)
}

// watch waits until the restored process has ticked long enough, checking
// every line it prints.
func (r *Runner) watch(ctx context.Context, a *Artifact, pid int, snap []byte) (n int, gap int64, err error) {
	start := time.Now()
	deadline := start.Add(max(r.Opts.Timeout, 2*r.Opts.Watch))
	for {
		now, err := os.ReadFile(a.Out)
		if err != nil {
			return 0, 0, err
		}
		n, gap, err = checkContinuation(a, snap, now)
		if err != nil {
			return n, gap, err
		}
		if n >= r.Opts.WatchTicks && time.Since(start) >= r.Opts.Watch {
			return n, gap, nil
		}
		if ws, ended := exited(pid); ended {
			return n, gap, fmt.Errorf("ended (%s) after %d ticks", describe(ws), n)
		}
		if time.Now().After(deadline) {
			return n, gap, fmt.Errorf("%d good ticks in %v, want %d", n, time.Since(start).Round(time.Millisecond), r.Opts.WatchTicks)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return n, gap, err
		}
	}
}

// waitTicks waits until the subject pid has printed want good ticks to out.
func (r *Runner) waitTicks(ctx context.Context, pid int, out string, want int) error {
	deadline := time.Now().Add(r.Opts.Timeout)
	for {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		p := scanOutput(b)
		if p.Bad != "" {
			return fmt.Errorf("subject printed %q", p.Bad)
		}
		if len(p.Ticks) >= want {
			return nil
		}
		if ws, ended := exited(pid); ended {
			return fmt.Errorf("subject ended (%s) after %d ticks", describe(ws), len(p.Ticks))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d ticks in %v, want %d", len(p.Ticks), r.Opts.Timeout, want)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// start starts a dump job's subject in a session of its own, stdin on
// /dev/null and its output appended to job.Out.
func (r *Runner) start(job Job) (int, error) {
	if err := os.MkdirAll(filepath.Dir(job.Out), 0o755); err != nil {
		return 0, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devNull.Close()
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, job.Env...)
	for attempt := 1; ; attempt++ {
		// O_APPEND: the restored process appends after the content the
		// restore puts back, whatever the offset at the dump.
		out, err := os.OpenFile(job.Out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			return 0, err
		}
		if r.Guest && job.Pid > 0 {
			// The next PID is ns_last_pid+1 unless a thread of this
			// program takes it first: checked below.
			if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(job.Pid-1)), 0o644); err != nil {
				out.Close()
				return 0, fmt.Errorf("choose pid %d: %w", job.Pid, err)
			}
		}
		p, err := os.StartProcess(job.Binary, []string{job.Binary}, &os.ProcAttr{
			// A restore goes back to the working directory by path: one
			// that exists everywhere.
			Dir:   filepath.Dir(job.Out),
			Env:   env,
			Files: []*os.File{devNull, out, out},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		out.Close()
		if err != nil {
			return 0, fmt.Errorf("start %s: %w", job.Binary, err)
		}
		pid := p.Pid
		// The runner reaps with wait4 itself.
		p.Release()
		if !r.Guest || job.Pid == 0 || pid == job.Pid {
			return pid, nil
		}
		killAndReap(pid)
		if attempt == 5 {
			return 0, fmt.Errorf("start %s: got pid %d, want %d", job.Binary, pid, job.Pid)
		}
	}
}

// command runs cryo with args and returns its stdout.
func (r *Runner) command(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.cryo(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("cryo %s: timed out after %v", args[0], r.Opts.Timeout)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// taskIDs lists the threads of pid, sorted.
func taskIDs(pid int) []int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var ids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			ids = append(ids, n)
		}
	}
	sort.Ints(ids)
	return ids
}

// exited reports whether the child pid has ended, reaping it if so.
func exited(pid int) (unix.WaitStatus, bool) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
	if err == unix.ECHILD {
		// Not our child (should not happen under a subreaper): look.
		_, serr := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return 0, serr != nil
	}
	return ws, got == pid && (ws.Exited() || ws.Signaled())
}

// reap waits up to timeout for the child pid to end and reaps it.
func reap(pid int, timeout time.Duration) (unix.WaitStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		if ws, ended := exited(pid); ended {
			return ws, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("pid %d did not end within %v", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killChild kills and reaps pid if it is a child of this process.
func killChild(pid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return
	}
	// The fields after the parenthesized command: state, ppid, ...
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
		killAndReap(pid)
	}
}

// killAndReap kills pid (if it still runs) and the processes below it,
// and reaps them.
func killAndReap(pid int) (unix.WaitStatus, error) {
	if pid <= 0 {
		return 0, nil
	}
	below := descendants(pid)
	unix.Kill(pid, unix.SIGKILL)
	ws, err := reap(pid, 30*time.Second)
	return ws, errors.Join(err, freePids(below))
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				out = append(out, k)
				out = append(out, descendants(k)...)
			}
		}
	}
	return out
}

// freePids kills pids and waits until they are gone, reaping those handed
// to this process, a child subreaper, when their parents died: the other
// processes of a killed tree, whose PIDs a later restore needs.
func freePids(pids []int) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGKILL)
		for {
			unix.Wait4(pid, nil, unix.WALL|unix.WNOHANG, nil)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d did not end", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// treeIDs lists the processes of a checkpoint but its root, and every ID
// its restore takes: its processes' and threads'.
func treeIDs(images string) (below, ids []int, err error) {
	d, err := image.Open(images)
	if err != nil {
		return nil, nil, err
	}
	tree, err := image.ReadAll[pb.PstreeEntry](d, image.Pstree, 0)
	if err != nil {
		return nil, nil, err
	}
	seen := map[uint32]bool{}
	add := func(id uint32) {
		if id != 0 && !seen[id] {
			seen[id] = true
			ids = append(ids, int(id))
		}
	}
	for i, e := range tree {
		if i > 0 {
			below = append(below, int(e.Pid))
		}
		add(e.Pid)
		for _, t := range e.Threads {
			add(t)
		}
	}
	return below, ids, nil
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func fileTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(b, lines)
}

func outputTail(path string) string { return fileTail(path, 8) }
