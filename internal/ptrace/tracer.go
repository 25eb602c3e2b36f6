// Package ptrace owns cryo's ptrace tracer: stopping every thread of a
// process or starting one traced from birth, reading and writing its
// registers and memory, injecting system calls and function calls into it,
// following the tasks those create, and letting it go: detached as it was,
// resumed with the registers a restore gives it, or killed.
//
// The kernel accepts ptrace requests for a tracee only from the thread that
// traces it, and a task born of a tracee is traced by that same thread. So
// the Tracers that share a tracer thread share a session: one goroutine
// locked to its OS thread for the session's whole life, which runs every
// request of theirs; a caller with many requests to make in a row makes
// them on that thread (Tracer.Run), for a request from another goroutine
// is a trip to the thread and back. Seize and Spawn start a session with
// one Tracer; a process born of an injection gets its own Tracer on its
// parent's session.
// The thread is never unlocked: when the session's last Tracer ends, the
// goroutine returns and the thread exits with it, which makes the kernel
// release any tracee still attached (and kill those traced with
// PTRACE_O_EXITKILL).
package ptrace

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// session is the tracer thread of one or more Tracers.
type session struct {
	calls chan func()
	done  chan struct{} // closed when the session goroutine has ended
	tid   int           // the tracer thread's

	// Owned by the session goroutine.
	tracers []*Tracer // the live ones, parents before children; the session ends when none is left
}

// Tracer holds every thread of one process in a ptrace-stop.
type Tracer struct {
	pid int
	// view is the thread through which /proc shows the process's memory
	// (proc.View): pid, or the first live thread when the leader has
	// exited, which no tracer can attach.
	view int
	s    *session
	mem  *os.File // /proc/PID/mem

	// Owned by the session goroutine.
	threads []int
	options int    // PTRACE_O_*
	born    bool   // made by the session (Spawn, an injection), which reaps it when it kills it
	scratch uint64 // address of the scratch mapping, 0 before the first injection
	// scratchHint is where PlaceScratch asked for the scratch mapping.
	scratchHint uint64
	// birthOptions are the options of the tasks an injection under way
	// creates, on top of options (clone3).
	birthOptions int
	deferred     map[int][]kernel.Siginfo // signals taken during injections and steps, re-sent at detach
	children     map[int]*Tracer          // processes born of injections into this one
	groupStop    unix.Signal              // the signal that had stopped the process when seized, 0 if it ran
	stopped      map[int]time.Time        // when each seized thread stopped
	left         bool                     // detached or killed
	// batch holds the entries of the last batch of injected calls, for
	// the next: a restore of 60,000 VMAs runs dozens.
	batch []byte
}

// newTracer returns a Tracer of pid that belongs to no session yet.
func newTracer(pid, options int, born bool) *Tracer {
	return &Tracer{pid: pid, view: pid, options: options, born: born, deferred: map[int][]kernel.Siginfo{}, children: map[int]*Tracer{}, stopped: map[int]time.Time{}}
}

// startSession starts a session whose first Tracer is t.
func startSession(t *Tracer) {
	t.s = &session{calls: make(chan func()), done: make(chan struct{}), tracers: []*Tracer{t}}
	tid := make(chan int)
	go t.s.loop(tid)
	t.s.tid = <-tid
}

// Seize stops every thread of process pid: PTRACE_SEIZE and
// PTRACE_INTERRUPT each one found in /proc/PID/task, wait for its stop,
// and read the list again until no new thread shows up. options
// (PTRACE_O_*) are set on every thread once all are stopped, so that none
// that auto-attaches new tasks can race the seizing.
func Seize(pid, options int) (*Tracer, error) {
	if !archOK {
		return nil, archErr
	}
	t := newTracer(pid, options, false)
	startSession(t)
	err := t.do(func() error {
		if err := t.seize(); err != nil {
			return err
		}
		return t.openMem()
	})
	if err != nil {
		t.leave(t.detach)
		return nil, fmt.Errorf("seize pid %d: %w", pid, err)
	}
	return t, nil
}

func (t *Tracer) openMem() error {
	mem, err := proc.Open(proc.Path(t.view, "mem"), unix.O_RDWR)
	if err != nil {
		return fmt.Errorf("open memory: %w", err)
	}
	t.mem = mem
	return nil
}

// loop runs the requests; it locks its thread for good (see the package
// comment).
func (s *session) loop(tid chan<- int) {
	runtime.LockOSThread()
	tid <- unix.Gettid()
	defer close(s.done)
	for len(s.tracers) > 0 {
		(<-s.calls)()
	}
}

// do runs f on the session thread.
func (s *session) do(f func() error) error {
	// Only the session goroutine runs on the tracer thread: from there
	// (a function Run runs) f runs at once, or the thread would wait for
	// itself.
	if unix.Gettid() == s.tid {
		return f()
	}
	errc := make(chan error, 1)
	select {
	case s.calls <- func() { errc <- f() }:
		return <-errc
	case <-s.done:
		return ErrDetached
	}
}

// do runs f on the tracer thread unless t has ended.
func (t *Tracer) do(f func() error) error {
	return t.s.do(func() error {
		if t.left {
			return ErrDetached
		}
		return f()
	})
}

// Run runs f on the tracer thread, where each call f makes to the
// Tracers of t's session runs at once: from another goroutine, a call is
// a trip to that thread and back, two thread switches (30 us on this
// kind of VM).
// A caller with many calls to make in a row (a dump reading each thread)
// makes them through Run. f must not wait for another goroutine that
// calls the session's Tracers.
func (t *Tracer) Run(f func() error) error { return t.do(f) }

// leave runs f on the tracer thread as t's last request, whether f fails
// or not.
func (t *Tracer) leave(f func() error) error {
	return t.do(func() error {
		defer t.drop()
		return f()
	})
}

// drop ends t; the session ends with its last Tracer.
func (t *Tracer) drop() {
	t.left = true
	if t.mem != nil {
		t.mem.Close()
	}
	t.s.tracers = slices.DeleteFunc(t.s.tracers, func(o *Tracer) bool { return o == t })
}

// onThread runs f on the tracer thread after checking that tid is traced.
func (t *Tracer) onThread(tid int, f func() error) error {
	return t.do(func() error {
		if !slices.Contains(t.threads, tid) {
			return fmt.Errorf("%w of pid %d", ErrNotThread, t.pid)
		}
		return f()
	})
}

// GroupStop returns the signal (SIGSTOP, SIGTSTP...) that had stopped the
// process when Seize found it in a group-stop, 0 if it was running. The
// process stays stopped: it is still when Detach lets it go, and a
// SIGCONT resumes it.
func (t *Tracer) GroupStop() unix.Signal { return t.groupStop }

// Pid is the traced process.
func (t *Tracer) Pid() int { return t.pid }

// View is the thread through which /proc shows the process (proc.View):
// its pid, or, when the thread group leader has exited while other
// threads run on, the first of those. Injections that concern the whole
// process go to it: the exited leader is not traced.
func (t *Tracer) View() int { return t.view }

// Threads lists the traced threads, sorted; nil once detached.
func (t *Tracer) Threads() []int {
	var tids []int
	t.do(func() error { tids = slices.Clone(t.threads); return nil })
	return tids
}

// seize does the work of Seize. Tracer thread only.
func (t *Tracer) seize() error {
	seen := map[int]bool{}
	for {
		tids, err := proc.ReadTasks(t.pid)
		if err != nil {
			return err
		}
		var fresh []int
		for _, tid := range tids {
			if seen[tid] {
				continue
			}
			seen[tid] = true
			if ioWorker(t.pid, tid) {
				// An io_uring worker (io-wq's iou-wrk, SQPOLL's
				// iou-sqp): a kernel thread of the process that never
				// returns to user space, so never runs an injected
				// call. It holds no state of the process's own: the
				// kernel makes workers again as a ring needs them (a
				// ring with an SQPOLL thread is refused with its
				// descriptor).
				continue
			}
			if err := unix.PtraceSeize(tid); err != nil {
				if errors.Is(err, unix.ESRCH) || (errors.Is(err, unix.EPERM) && exiting(t.pid, tid)) {
					// Exited since the listing, or exiting: it cannot be
					// attached. So is a leader that has exited while its
					// threads run on; one alone is a zombie, refused below.
					continue
				}
				return fmt.Errorf("ptrace seize tid %d: %w", tid, err)
			}
			if err := unix.PtraceInterrupt(tid); err != nil {
				return fmt.Errorf("ptrace interrupt tid %d: %w", tid, err)
			}
			fresh = append(fresh, tid)
		}
		if len(fresh) == 0 {
			break
		}
		for _, tid := range fresh {
			ws, err := waitStopBy(tid, interruptStop, time.Now().Add(seizeWait))
			if err != nil {
				if errors.Is(err, ErrExited) && tid != t.pid {
					continue
				}
				return err
			}
			if ws.StopSignal() != unix.SIGTRAP {
				// A group-stop: the kernel reports the signal that
				// stopped the process to each thread.
				t.groupStop = ws.StopSignal()
			}
			t.threads = append(t.threads, tid)
			t.stopped[tid] = time.Now()
		}
	}
	slices.Sort(t.threads)
	if len(t.threads) == 0 {
		return fmt.Errorf("%w: no thread could be attached", ErrExited)
	}
	for _, tid := range t.threads {
		if err := setOptions(tid, t.options); err != nil {
			return err
		}
	}
	// Every live thread is stopped: the view is one of them.
	view, err := proc.View(t.pid)
	if err != nil {
		return err
	}
	if !slices.Contains(t.threads, view) {
		return fmt.Errorf("view tid %d of pid %d: %w", view, t.pid, ErrNotThread)
	}
	t.view = view
	return nil
}

// setOptions sets the PTRACE_O_* options of thread tid. Tracer thread
// only.
func setOptions(tid, options int) error {
	if err := unix.PtraceSetOptions(tid, options); err != nil {
		return fmt.Errorf("set ptrace options of tid %d: %w", tid, err)
	}
	return nil
}

// The first stops of a thread, which waitStop waits for.
var (
	// interruptStop follows PTRACE_INTERRUPT, or is a group-stop if the
	// process was stopped.
	interruptStop = func(ws unix.WaitStatus) bool { return event(ws) == unix.PTRACE_EVENT_STOP }
	// execStop follows the exec of a PTRACE_TRACEME child.
	execStop = func(ws unix.WaitStatus) bool { return event(ws) == 0 && ws.StopSignal() == unix.SIGTRAP }
	// birthStop is the first of a task that starts traced: a
	// PTRACE_EVENT_STOP if its parent's tracer seized it, a SIGSTOP
	// signal-delivery-stop if it attached otherwise.
	birthStop = func(ws unix.WaitStatus) bool {
		return interruptStop(ws) || event(ws) == 0 && ws.StopSignal() == unix.SIGSTOP
	}
)

// waitStop waits until thread tid reaches the stop that isStop accepts. A
// signal dequeued before it is delivered as the kernel was about to; the
// stop awaited stays pending and comes right after. Tracer thread only.
func waitStop(tid int, isStop func(unix.WaitStatus) bool) (unix.WaitStatus, error) {
	return waitStopBy(tid, isStop, time.Time{})
}

// waitStopBy is waitStop that gives up at deadline, unless it is zero,
// with ErrNoStop.
func waitStopBy(tid int, isStop func(unix.WaitStatus) bool, deadline time.Time) (unix.WaitStatus, error) {
	for {
		ws, err := waitBy(tid, deadline)
		if err != nil {
			return ws, err
		}
		switch {
		case isStop(ws):
			return ws, nil
		case event(ws) == 0:
			if err := unix.PtraceCont(tid, int(ws.StopSignal())); err != nil {
				return ws, fmt.Errorf("deliver %v to tid %d: %w", ws.StopSignal(), tid, err)
			}
		default:
			return ws, fmt.Errorf("wait for tid %d to stop: unexpected ptrace event %d", tid, event(ws))
		}
	}
}

// wait waits for the next stop of a traced thread; its death is ErrExited.
// Tracer thread only.
func wait(tid int) (unix.WaitStatus, error) { return waitBy(tid, time.Time{}) }

// seizeWait is how long Seize waits for a thread to stop. A thread in
// uninterruptible sleep stops only once it wakes, which may be never (a
// stuck NFS server): the dump then fails, naming it, instead of waiting.
var seizeWait = 30 * time.Second

// waitBy is wait that gives up at deadline, unless it is zero, with
// ErrNoStop, polling the while.
func waitBy(tid int, deadline time.Time) (unix.WaitStatus, error) {
	defer watchDeath(tid)()
	var ws unix.WaitStatus
	options := unix.WALL
	if !deadline.IsZero() {
		options |= unix.WNOHANG
	}
	for {
		got, err := unix.Wait4(tid, &ws, options, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err == nil && got == 0:
			if time.Now().After(deadline) {
				return ws, fmt.Errorf("tid %d (%s): %w within %v", tid, whereAsleep(tid), ErrNoStop, seizeWait)
			}
			time.Sleep(time.Millisecond)
			continue
		case err != nil:
			return ws, fmt.Errorf("wait for tid %d: %w", tid, err)
		case ws.Exited():
			return ws, fmt.Errorf("tid %d: %w with status %d", tid, ErrExited, ws.ExitStatus())
		case ws.Signaled():
			return ws, fmt.Errorf("tid %d: %w by %v", tid, ErrExited, ws.Signal())
		}
		assertTracer(tid)
		return ws, nil
	}
}

// deathCheck is how often a wait checks that its thread's process was not
// killed from outside.
const deathCheck = 100 * time.Millisecond

// watchDeath covers a wait for thread tid. A process that someone else
// kills reports its main thread's death only once its other threads are
// reaped, by their tracer, which is the very thread waiting for the main
// one: the wait would never end. So while it waits, a timer checks
// whether tid died (a zombie) and reaps the other threads of its process:
// any thread of cryo may wait for its tracees. The result stops the
// watch.
func watchDeath(tid int) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var timer *time.Timer
	// Under mu: on a loaded machine the first check may run before
	// AfterFunc has returned.
	mu.Lock()
	defer mu.Unlock()
	timer = time.AfterFunc(deathCheck, func() {
		if st, err := proc.ReadStat(tid); err == nil && st.State == 'Z' {
			others, _ := proc.ReadTasks(tid)
			for _, o := range others {
				if o != tid {
					var ws unix.WaitStatus
					unix.Wait4(o, &ws, unix.WALL|unix.WNOHANG, nil)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer.Reset(deathCheck)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// event is the PTRACE_EVENT_* of a ptrace-stop, 0 for a signal-delivery-stop.
func event(ws unix.WaitStatus) int { return int(ws) >> 16 }

// Detach unmaps the scratch mapping if an injection made one, detaches
// every thread, which resumes where it stopped, and re-sends the signals
// that arrived during injections and steps and could not be held back
// (DeferredSignals). The Tracer takes no more requests, even when Detach
// fails.
func (t *Tracer) Detach() error {
	if err := t.leave(t.detach); err != nil {
		return fmt.Errorf("detach pid %d: %w", t.pid, err)
	}
	return nil
}

// detach does the work of Detach. Tracer thread only. A thread with
// deferred signals ran an injection or a step, so it is at a
// signal-delivery-stop: the detach delivers its first deferred signal with
// its siginfo, as if the kernel had just dequeued it. Further ones, rarer
// still, are sent again with tgkill, which makes cryo their sender.
func (t *Tracer) detach() error {
	var errs []error
	var gone []int
	if t.scratch != 0 {
		errs = append(errs, t.unmapScratch(t.threads[0]))
	}
	errs = append(errs, t.reissueSleeps())
	for _, tid := range t.threads {
		var sig unix.Signal
		if d := t.deferred[tid]; len(d) > 0 {
			sig = d[0].Signo()
			if err := kernel.PtraceSetSiginfo(tid, &d[0]); err != nil {
				if !errors.Is(err, unix.ESRCH) {
					errs = append(errs, err)
				}
				continue
			}
		}
		err := kernel.PtraceDetachSignal(tid, sig)
		switch {
		case errors.Is(err, unix.ESRCH) && killed(t.pid, tid):
			gone = append(gone, tid)
		case errors.Is(err, unix.ESRCH):
		case err != nil:
			errs = append(errs, err)
		}
	}
	// A thread that is not in its stop any more was killed (from outside:
	// a dump never lets one go before this). Dead, it stays traced until
	// this thread reaps it, and the process's main thread with it: reap
	// them, the others first, as the kernel reports the main one's death
	// only after theirs.
	slices.SortFunc(gone, func(a, b int) int { return cmp.Compare(boolInt(a == t.pid), boolInt(b == t.pid)) })
	for _, tid := range gone {
		if err := reap(tid); err != nil {
			errs = append(errs, err)
		}
	}
	for tid, sigs := range t.deferred {
		for _, si := range sigs[1:] {
			if err := unix.Tgkill(t.pid, tid, si.Signo()); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("re-send %v to tid %d: %w", si.Signo(), tid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// killed reports whether thread tid of pid is dead or dying of SIGKILL.
func killed(pid, tid int) bool {
	if exiting(pid, tid) {
		return true
	}
	st, err := proc.ReadTaskStatus(pid, tid)
	return err == nil && (st.SigPnd|st.ShdPnd)&(1<<(unix.SIGKILL-1)) != 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// deferSignal holds back the signal of thread tid's current
// signal-delivery-stop, which a process sent while the tracer was running
// the thread, for the detach to deliver. Tracer thread only.
func (t *Tracer) deferSignal(tid int, si kernel.Siginfo) {
	t.deferred[tid] = append(t.deferred[tid], si)
}

// DeferredSignals returns the siginfos (kernel.SiginfoSize bytes each) of
// the signals held back from thread tid so far, in the order they came:
// they were pending when the tracer took them, so a dump records them with
// the thread's queue.
func (t *Tracer) DeferredSignals(tid int) []byte {
	var b []byte
	t.do(func() error {
		for _, si := range t.deferred[tid] {
			b = append(b, si[:]...)
		}
		return nil
	})
	return b
}

// Kill sends SIGKILL to the process and reaps its threads; KillAll tells
// who reaps the leader. The Tracer takes no more requests, even when Kill
// fails.
func (t *Tracer) Kill() error {
	if err := t.leave(t.kill); err != nil {
		return fmt.Errorf("kill pid %d: %w", t.pid, err)
	}
	return nil
}

// KillAll kills, as Kill does, the process of every Tracer of t's session
// that has not ended, parents before children, so that a failed restore
// leaves nothing behind; t itself may have ended. Those processes are
// reaped: a process the session made (Spawn, an injection) by the tracer;
// a seized one by its parent, to which the tracer hands it (or, if that
// parent is the tracer's own process, whatever waits for it there). A
// process born of a spawned one is that one's child, and the death of its
// parent hands it to the nearest child subreaper: the tracer reaps it if
// that is the tracer's process (PR_SET_CHILD_SUBREAPER), or if it was born
// with CLONE_PARENT; otherwise its zombie stays with init.
//
// If cryo itself dies, PTRACE_O_EXITKILL kills the processes that have it
// and Spawn's parent-death signal the spawned one.
func (t *Tracer) KillAll() error {
	err := t.s.do(func() error {
		var errs []error
		for _, c := range slices.Clone(t.s.tracers) {
			errs = append(errs, c.kill())
			c.drop()
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("kill the tracees of pid %d's tracer: %w", t.pid, err)
	}
	return nil
}

// kill sends SIGKILL to t's process and reaps its threads, the leader
// last: the kernel reports the leader's exit only once the other threads
// are reaped, and only their tracer reaps traced threads. The leader is
// left alone only if it is a child of this process that the session did
// not make: waiting for it here would reap it under the feet of its owner
// (os/exec, say), whose own wait reaps it even while traced.
// Tracer thread only.
func (t *Tracer) kill() error {
	reapLeader := t.born
	if !t.born {
		st, err := proc.ReadStat(t.pid)
		reapLeader = err == nil && st.PPid != os.Getpid()
	}
	if err := unix.Kill(t.pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", t.pid, err)
	}
	var errs []error
	for _, tid := range t.threads {
		if tid != t.pid {
			errs = append(errs, reap(tid))
		}
	}
	if reapLeader {
		errs = append(errs, reap(t.pid))
	}
	return errors.Join(errs...)
}

// reap waits for a killed thread to exit and reaps it, or hands it to its
// parent if that is not the tracer's process. It continues the thread
// through any stop it reaches on the way (PTRACE_EVENT_EXIT); ECHILD means
// it is already reaped. Tracer thread only.
func reap(tid int) error {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		switch {
		case err == unix.EINTR:
		case err == unix.ECHILD:
			return nil
		case err != nil:
			return fmt.Errorf("reap tid %d: %w", tid, err)
		case ws.Stopped():
			unix.PtraceCont(tid, 0) // if it fails, the thread is dead already
		default:
			return nil
		}
	}
}

// exiting reports whether thread tid of pid is gone or dying, which
// PTRACE_SEIZE refuses with EPERM rather than ESRCH.
func exiting(pid, tid int) bool {
	st, err := proc.ReadTaskStatus(pid, tid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}

// PinWithSession ties the traced process, and so every task it makes
// from then on, and the session thread to the one CPU that thread runs
// on, until the caller sets their CPUs again (the session thread's until
// it ends). A tracee's stop wakes the tracer and the tracer's request
// wakes the tracee: on one CPU, such a wake is a switch, where across
// CPUs it waits on another's idle state, which in a virtual machine
// costs tens of microseconds, many times a thread.
func (t *Tracer) PinWithSession() error {
	return t.do(func() error {
		cpu, err := kernel.CurrentCPU()
		if err != nil {
			return fmt.Errorf("find the tracer's CPU: %w", err)
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("tie the tracer to CPU %d: %w", cpu, err)
		}
		if err := unix.SchedSetaffinity(t.pid, &one); err != nil {
			return fmt.Errorf("tie pid %d to CPU %d: %w", t.pid, cpu, err)
		}
		return nil
	})
}

// pfIOWorker is PF_IO_WORKER (include/linux/sched.h): a thread io_uring
// made for a process.
const pfIOWorker = 0x10

// ioWorker reports whether thread tid of process pid is an io_uring
// worker.
func ioWorker(pid, tid int) bool {
	st, err := proc.ReadTaskStat(pid, tid)
	return err == nil && st.Flags&pfIOWorker != 0
}

// whereAsleep says where thread tid of a process sleeps: its state and the
// kernel function it waits in.
func whereAsleep(tid int) string {
	st, err := proc.ReadStat(tid)
	if err != nil {
		return "state unknown"
	}
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", tid))
	return fmt.Sprintf("state %c, waiting in %s", st.State, cmp.Or(string(wchan), "?"))
}
