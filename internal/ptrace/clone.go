package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// New tasks
//
// A task that an injected system call or function creates (clone3, clone,
// fork) starts traced by the session thread and stopped, when the options
// ask for it (PTRACE_O_TRACECLONE, PTRACE_O_TRACEFORK; Clone3 sets them
// for its call). The injection catches its parent's PTRACE_EVENT_CLONE or
// PTRACE_EVENT_FORK stop, waits for the new task's first stop, gives it
// the parent's options and the signal mask the parent had before the
// injection (it inherited the injection's), and adopts it: a thread joins
// its process's Tracer, a process gets a Tracer of its own on the same
// session (Child). The child of a fork has a copy of the scratch mapping
// at the same address, so its Tracer injects into it at once.
//
// The new task stops at the instruction after the gadget's syscall, with
// RAX 0 and its parent's other registers but for what clone_args sets
// (stack pointer, TLS base); detached as it is, it would run into the int3
// and die of SIGTRAP: give it registers first (Resume). Its first stop is
// a SIGSTOP signal-delivery-stop under a spawned tracer, a
// PTRACE_EVENT_STOP under a seized one; both are signal stops, where
// Resume can set its final registers.
//
// vfork is not followed: the parent would wait in the kernel for its
// stopped child to exec or exit, and the injection with it.

// Where Clone3 writes clone_args and the set_tid array: in the gadget's
// page, after the gadget and far above the stack of injected calls.
const (
	cloneArgsOffset = 64
	maxSetTid       = 32 // MAX_PID_NS_LEVEL
	traceBirths     = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK
)

// Clone3 injects clone3(2) with args into thread tid and returns the id of
// the task it creates, which is born traced and stopped (see New tasks): a
// thread (CLONE_THREAD, exit signal 0) joins Threads, a process gets a
// Tracer that Child returns. setTid, if given, is the id wanted in each
// PID namespace, innermost first (an id in use fails with EEXIST); Clone3
// writes it and args into the tracee and points args.SetTid at it.
func (t *Tracer) Clone3(tid int, args kernel.CloneArgs, setTid ...int) (int, error) {
	return t.clone3(tid, args, 0, setTid)
}

// Snapshot injects into thread tid a fork of the process whose child is a
// copy-on-write copy of its memory at this instant, for the tracer to read
// while the process runs on. The child never runs: it is born stopped
// (see New tasks) and is killed, with PTRACE_O_EXITKILL, if the tracer
// dies before it kills it. It shares the process's descriptor table
// (CLONE_FILES), so that it holds no file open of its own: a pipe or a
// socket the process closes meanwhile closes. It has no exit signal: the
// process gets no SIGCHLD for it, and its wait() does not see it (only a
// wait with __WALL or __WCLONE does). Killed, its zombie is the process's
// own child, which only the process can reap: ReapSnapshot.
func (t *Tracer) Snapshot(tid int) (*Tracer, error) {
	pid, err := t.clone3(tid, kernel.CloneArgs{Flags: unix.CLONE_FILES}, unix.PTRACE_O_EXITKILL, nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot pid %d: %w", t.pid, err)
	}
	c, err := t.Child(pid)
	if err != nil {
		return nil, fmt.Errorf("snapshot pid %d: %w", t.pid, err)
	}
	return c, nil
}

// ReapSnapshot reaps, with a wait4 injected into thread tid, the zombie
// of a Snapshot child that was killed: the process is its parent. It is
// no error that the process reaped it first (a wait with __WALL).
func (t *Tracer) ReapSnapshot(tid, child int) error {
	var got uint64
	err := t.onThread(tid, func() (err error) {
		args := []uint64{uint64(child), 0, unix.WNOHANG | unix.WALL, 0}
		if t.scratch != 0 {
			got, err = t.syscallAt(tid, t.scratch, unix.SYS_WAIT4, args)
			return err
		}
		// One injection at borrowed code rather than three with a
		// scratch mapping: the process was seized again for this alone.
		return t.borrow(func(site uint64) (err error) {
			got, err = t.syscallAt(tid, site, unix.SYS_WAIT4, args)
			return err
		})
	})
	switch {
	case errors.Is(err, unix.ECHILD):
		return nil
	case err != nil:
		return fmt.Errorf("reap snapshot pid %d: %w", child, err)
	case int(got) != child:
		return fmt.Errorf("reap snapshot pid %d: %w", child, ErrNotReaped)
	}
	return nil
}

// clone3 does the work of Clone3; the task born gets the options
// birthOptions on top of the tracer's, from its birth on.
func (t *Tracer) clone3(tid int, args kernel.CloneArgs, birthOptions int, setTid []int) (int, error) {
	var ret uint64
	err := t.onThread(tid, func() error {
		if args.Flags&unix.CLONE_VFORK != 0 {
			return ErrVfork
		}
		if len(setTid) > maxSetTid {
			return fmt.Errorf("set_tid of %d ids, at most %d", len(setTid), maxSetTid)
		}
		gadget, err := t.gadget(tid)
		if err != nil {
			return err
		}
		addr := gadget + cloneArgsOffset
		if err := t.WriteMem(addr, cloneRecord(args, addr, setTid)); err != nil {
			return err
		}
		t.birthOptions = birthOptions
		defer func() { t.birthOptions = 0 }()
		return t.births(tid, func() (err error) {
			ret, err = t.syscallAt(tid, gadget, unix.SYS_CLONE3, []uint64{addr, cloneArgsSize})
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("inject clone3 into tid %d: %w", tid, err)
	}
	return int(ret), nil
}

// CloneThreads creates a thread of id tids[i] for each i in thread tid's
// process, as Clone3 with args and that id would, in batches (see
// Syscalls): one stop for dozens of threads. It stops at the first that
// fails: a *SyscallError gives its index in tids.
func (t *Tracer) CloneThreads(tid int, args kernel.CloneArgs, tids []int) error {
	err := t.onThread(tid, func() error {
		if args.Flags&unix.CLONE_THREAD == 0 {
			return fmt.Errorf("clone flags %#x: not a thread", args.Flags)
		}
		gadget, err := t.gadget(tid)
		if err != nil {
			return err
		}
		// The records go in the caller's buffer, as many as fit.
		buf, per := gadget+pageSize, int(ScratchSize/cloneRecordSize)
		for done := 0; done < len(tids); done += per {
			ids := tids[done:min(done+per, len(tids))]
			var b []byte
			calls := make([]Sys, len(ids))
			for i, id := range ids {
				addr := buf + uint64(i)*cloneRecordSize
				rec := cloneRecord(args, addr, []int{id})
				b = append(append(b, rec...), make([]byte, cloneRecordSize-uint64(len(rec)))...)
				calls[i] = Sys{Nr: unix.SYS_CLONE3, Args: [maxArgs]uint64{addr, cloneArgsSize}}
			}
			if err := t.WriteMem(buf, b); err != nil {
				return err
			}
			err := t.births(tid, func() error { return t.runBatch(tid, gadget, calls, done) })
			if err != nil {
				return err
			}
			for i, c := range calls {
				if c.Ret != uint64(ids[i]) {
					return fmt.Errorf("clone3 of thread %d made tid %d", ids[i], c.Ret)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inject %d clone3 into tid %d: %w", len(tids), tid, err)
	}
	return nil
}

// cloneArgsSize is the size of struct clone_args; cloneRecordSize that of
// a record CloneThreads writes: the struct and one id, 8-byte aligned.
var (
	cloneArgsSize   = uint64(binary.Size(kernel.CloneArgs{}))
	cloneRecordSize = (cloneArgsSize + 4 + 7) &^ 7
)

// cloneRecord returns args, to be written at addr, followed by the
// set_tid array of setTid that args then points at.
func cloneRecord(args kernel.CloneArgs, addr uint64, setTid []int) []byte {
	if len(setTid) > 0 {
		args.SetTid, args.SetTidSize = addr+cloneArgsSize, uint64(len(setTid))
	}
	b, _ := binary.Append(nil, binary.NativeEndian, args) // fixed size: cannot fail
	for _, id := range setTid {
		b = binary.NativeEndian.AppendUint32(b, uint32(id))
	}
	return b
}

// births runs f, which injects clone3 calls into thread tid, with the
// tasks they create followed (see New tasks). Tracer thread only.
func (t *Tracer) births(tid int, f func() error) error {
	// A task auto-attached at birth starts with its parent's options.
	if err := setOptions(tid, t.options|traceBirths|t.birthOptions); err != nil {
		return err
	}
	err := f()
	if errors.Is(err, ErrExited) {
		return err
	}
	return errors.Join(err, setOptions(tid, t.options))
}

// Child returns the Tracer of process pid, born of an injection into t.
func (t *Tracer) Child(pid int) (*Tracer, error) {
	var c *Tracer
	err := t.do(func() error {
		if c = t.children[pid]; c == nil {
			return fmt.Errorf("pid %d: %w of pid %d", pid, ErrNotChild, t.pid)
		}
		return nil
	})
	return c, err
}

// adopt takes over the task whose birth has stopped thread parent, as New
// tasks tells; mask is the signal mask the parent had before the
// injection. Tracer thread only.
func (t *Tracer) adopt(parent int, mask uint64) error {
	msg, err := unix.PtraceGetEventMsg(parent)
	if err != nil {
		return fmt.Errorf("get the task tid %d created: %w", parent, err)
	}
	tid := int(msg)
	if _, err := waitStop(tid, birthStop); err != nil {
		return err
	}
	st, err := proc.ReadStatus(tid)
	if err != nil {
		return fmt.Errorf("adopt tid %d: %w", tid, err)
	}
	// Adopted first, so that KillAll covers the task if what follows fails.
	if st.Tgid == t.pid {
		t.threads = append(t.threads, tid)
		slices.Sort(t.threads)
	} else {
		c := newTracer(tid, t.options|t.birthOptions, true)
		c.s, c.threads, c.scratch = t.s, []int{tid}, t.scratch
		t.s.tracers = append(t.s.tracers, c)
		t.children[tid] = c
		if err := c.openMem(); err != nil {
			return fmt.Errorf("adopt pid %d: %w", tid, err)
		}
	}
	return errors.Join(setOptions(tid, t.options|t.birthOptions), kernel.PtraceSetSigmask(tid, mask))
}
