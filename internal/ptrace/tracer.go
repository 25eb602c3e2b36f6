// Package ptrace owns cryo's ptrace tracer: stopping every thread of a
// process, reading and writing its registers and memory, and injecting
// system calls and function calls into it.
//
// The kernel accepts ptrace requests for a tracee only from the thread that
// attached to it, so each Tracer runs every request on one goroutine locked
// to its OS thread for the Tracer's whole life. That thread is never
// unlocked: when the Tracer ends, the goroutine returns and the thread
// exits with it, which makes the kernel release any tracee still attached
// (and kill those seized with PTRACE_O_EXITKILL).
package ptrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// Tracer holds every thread of one process in a ptrace-stop.
type Tracer struct {
	pid   int
	calls chan func()
	done  chan struct{} // closed when the tracer goroutine has ended
	mem   *os.File      // /proc/PID/mem

	// Owned by the tracer goroutine.
	threads  []int
	scratch  uint64                // address of the scratch mapping, 0 before the first injection
	deferred map[int][]unix.Signal // signals sent during injections, re-sent at detach
	ending   bool
}

// Seize stops every thread of process pid: PTRACE_SEIZE and
// PTRACE_INTERRUPT each one found in /proc/PID/task, wait for its stop,
// and read the list again until no new thread shows up. options
// (PTRACE_O_*) are set on every thread once all are stopped, so that none
// that auto-attaches new tasks can race the seizing.
func Seize(pid, options int) (*Tracer, error) {
	t := &Tracer{
		pid:      pid,
		calls:    make(chan func()),
		done:     make(chan struct{}),
		deferred: map[int][]unix.Signal{},
	}
	go t.loop()
	if err := t.do(func() error { return t.seize(options) }); err != nil {
		t.end(t.detach, true)
		return nil, fmt.Errorf("seize pid %d: %w", pid, err)
	}
	mem, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		t.end(t.detach, true)
		return nil, fmt.Errorf("seize pid %d: open memory: %w", pid, err)
	}
	t.mem = mem
	return t, nil
}

// loop runs the requests; it locks its thread for good (see the package
// comment).
func (t *Tracer) loop() {
	runtime.LockOSThread()
	defer close(t.done)
	for !t.ending {
		(<-t.calls)()
	}
}

// do runs f on the tracer thread.
func (t *Tracer) do(f func() error) error {
	return t.end(f, false)
}

// end runs f on the tracer thread; if last, it is the last request and
// the tracer goroutine ends after it.
func (t *Tracer) end(f func() error, last bool) error {
	errc := make(chan error, 1)
	select {
	case t.calls <- func() { t.ending = last; errc <- f() }:
		return <-errc
	case <-t.done:
		return ErrDetached
	}
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

// Pid is the traced process.
func (t *Tracer) Pid() int { return t.pid }

// Threads lists the traced threads, sorted; nil once detached.
func (t *Tracer) Threads() []int {
	var tids []int
	t.do(func() error { tids = slices.Clone(t.threads); return nil })
	return tids
}

func (t *Tracer) seize(options int) error {
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
			if err := unix.PtraceSeize(tid); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // exited since the listing
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
			if err := waitInterrupted(tid); err != nil {
				if errors.Is(err, ErrExited) && tid != t.pid {
					continue
				}
				return err
			}
			t.threads = append(t.threads, tid)
		}
	}
	slices.Sort(t.threads)
	for _, tid := range t.threads {
		if err := unix.PtraceSetOptions(tid, options); err != nil {
			return fmt.Errorf("set ptrace options of tid %d: %w", tid, err)
		}
	}
	return nil
}

// waitInterrupted waits until a seized and interrupted thread stops.
func waitInterrupted(tid int) error {
	for {
		ws, err := wait(tid)
		if err != nil {
			return err
		}
		switch {
		case event(ws) == unix.PTRACE_EVENT_STOP:
			// The interrupt, or a group-stop if the process was stopped.
			return nil
		case event(ws) == 0:
			// A signal dequeued before the interrupt took effect: deliver
			// it as the kernel was about to; the interrupt stays pending
			// and stops the thread right after.
			if err := unix.PtraceCont(tid, int(ws.StopSignal())); err != nil {
				return fmt.Errorf("deliver %v to tid %d: %w", ws.StopSignal(), tid, err)
			}
		default:
			return fmt.Errorf("wait for tid %d to stop: unexpected ptrace event %d", tid, event(ws))
		}
	}
}

// wait waits for the next stop of a traced thread; its death is ErrExited.
func wait(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return ws, fmt.Errorf("wait for tid %d: %w", tid, err)
		case ws.Exited():
			return ws, fmt.Errorf("tid %d: %w with status %d", tid, ErrExited, ws.ExitStatus())
		case ws.Signaled():
			return ws, fmt.Errorf("tid %d: %w by %v", tid, ErrExited, ws.Signal())
		}
		return ws, nil
	}
}

// event is the PTRACE_EVENT_* of a ptrace-stop, 0 for a signal-delivery-stop.
func event(ws unix.WaitStatus) int { return int(ws) >> 16 }

// Detach unmaps the scratch mapping if an injection made one, detaches
// every thread, which resumes where it stopped, and re-sends the signals
// that arrived during injections and could not be held back. The Tracer
// takes no more requests, even when Detach fails.
func (t *Tracer) Detach() error {
	err := t.end(t.detach, true)
	if t.mem != nil {
		t.mem.Close()
	}
	if err != nil {
		return fmt.Errorf("detach pid %d: %w", t.pid, err)
	}
	return nil
}

func (t *Tracer) detach() error {
	var errs []error
	if t.scratch != 0 {
		errs = append(errs, t.unmapScratch(t.threads[0]))
	}
	for _, tid := range t.threads {
		if err := unix.PtraceDetach(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("ptrace detach tid %d: %w", tid, err))
		}
	}
	for tid, sigs := range t.deferred {
		for _, sig := range sigs {
			if err := unix.Tgkill(t.pid, tid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("re-send %v to tid %d: %w", sig, tid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Kill sends SIGKILL to the process and ends the tracer without detaching:
// the exit of the tracer thread releases the dying threads, so that the
// process's parent can reap it.
func (t *Tracer) Kill() error {
	err := t.end(func() error { return unix.Kill(t.pid, unix.SIGKILL) }, true)
	if t.mem != nil {
		t.mem.Close()
	}
	if err != nil {
		return fmt.Errorf("kill pid %d: %w", t.pid, err)
	}
	return nil
}
