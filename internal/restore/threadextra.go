package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// What a thread holds beyond its core entry (cryo-thread-extra.img): the
// CPUs it may run on, its I/O priority, its memory policy and its audit
// login UID. The restore
// runs with every task it makes tied to the tracer's CPU
// (ptrace.Tracer.PinWithSession); once they are made, each thread gets
// the CPUs it was tied to at the dump, or, when it was not tied to any but
// the dumping cryo's, the CPUs this cryo may use.

// threadExtra is a thread's record, ready to set.
type threadExtra struct {
	cpus   *unix.CPUSet // nil: not tied
	ioprio uint32
	// mempolicy is the memory policy's mode and flags, 0 for the
	// default; nodes its nodes.
	mempolicy uint32
	nodes     []uint64
	// The process's, on its leader's: PR_SET_MDWE flags, and the core
	// dump filter (nil: cryo's).
	mdwe           uint32
	coredumpFilter *uint32
	// loginUID is the thread's audit login UID when it is not its
	// process's (nil), which it inherits.
	loginUID *uint32
}

// loadThreadExtras reads cryo-thread-extra.img, if the checkpoint has it.
func (t *tree) loadThreadExtras() error {
	xs, err := t.dir.ReadThreadExtras()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	threads, leaders := map[uint32]bool{}, map[uint32]bool{}
	for _, r := range t.procs {
		leaders[uint32(r.pid)] = true
		for _, tid := range r.c.threads {
			threads[tid] = true
		}
	}
	t.threadExtras = map[uint32]threadExtra{}
	for _, x := range xs {
		if !threads[x.TID] {
			return imageErr("%s: tid %d is no thread of the checkpoint", image.ThreadExtras.FileName(0), x.TID)
		}
		if _, ok := t.threadExtras[x.TID]; ok {
			return imageErr("%s: tid %d twice", image.ThreadExtras.FileName(0), x.TID)
		}
		if (x.MDWE != 0 || x.CoredumpFilter != nil) && !leaders[x.TID] {
			return imageErr("%s: tid %d, which leads no process, has what a process holds", image.ThreadExtras.FileName(0), x.TID)
		}
		e := threadExtra{ioprio: x.IOPrio, mdwe: x.MDWE, coredumpFilter: x.CoredumpFilter, mempolicy: x.MemPolicy, nodes: x.MemNodes, loginUID: x.LoginUID}
		if x.CPUs != nil {
			e.cpus = new(unix.CPUSet)
			for i, w := range x.CPUs {
				for b := range 64 {
					if w&(1<<b) != 0 {
						e.cpus.Set(i*64 + b)
					}
				}
			}
		}
		t.threadExtras[x.TID] = e
	}
	return nil
}

// pinStub ties the stub, and the tasks the restore makes of it, to the
// tracer's CPU, and remembers the CPUs it had: cryo's.
func (t *tree) pinStub() error {
	if err := unix.SchedGetaffinity(t.stub.Pid(), &t.cpus); err != nil {
		return fmt.Errorf("read the CPU affinity of the stub %d: %w", t.stub.Pid(), err)
	}
	return t.stub.PinWithSession()
}

// restoreThreadExtras gives each thread its CPUs, I/O priority and
// memory policy, and the process its core dump filter and its
// memory-deny-write-execute flags, last, once the restore maps and
// protects nothing more in it: the pages written before follow cryo's
// policy. A thread tied to CPUs none of which this machine has runs on
// cryo's, and one whose policy names nodes it lacks has the default
// policy, which the log says.
func (r *restorer) restoreThreadExtras() error {
	if f := r.threadExtras[uint32(r.pid)].coredumpFilter; f != nil {
		if err := os.WriteFile(proc.Path(r.pid, "coredump_filter"), fmt.Appendf(nil, "%#x", *f), 0); err != nil {
			return fmt.Errorf("set the core dump filter %#x: %w", *f, err)
		}
	}
	if mdwe := r.threadExtras[uint32(r.pid)].mdwe; mdwe != 0 {
		if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_MDWE, uint64(mdwe), 0, 0, 0); err != nil {
			return fmt.Errorf("set PR_SET_MDWE flags %#x: %w", mdwe, err)
		}
	}
	// Every thread was cloned from the leader, with cryo's I/O priority
	// (usually none), before any was set: read once.
	born, err := kernel.IoprioGet(r.pid)
	if err != nil {
		return fmt.Errorf("read the I/O priority of pid %d: %w", r.pid, err)
	}
	for _, tid := range r.c.threads {
		x := r.threadExtras[tid]
		set := x.cpus
		if set == nil {
			set = &r.cpus
		}
		err := unix.SchedSetaffinity(int(tid), set)
		if errors.Is(err, unix.EINVAL) && set != &r.cpus {
			r.log.Warn("a thread was tied to CPUs none of which can run it here; it runs on cryo's", "tid", tid)
			err = unix.SchedSetaffinity(int(tid), &r.cpus)
		}
		if err != nil {
			return fmt.Errorf("set the CPU affinity of tid %d: %w", tid, err)
		}
		if x.ioprio != born {
			if err := kernel.IoprioSet(int(tid), x.ioprio); err != nil {
				return fmt.Errorf("set the I/O priority %#x of tid %d: %w", x.ioprio, tid, err)
			}
		}
		if err := r.setMemPolicy(int(tid), x.mempolicy, x.nodes); err != nil {
			return err
		}
	}
	return nil
}

// setMemPolicy gives thread tid the memory policy mode over nodes, if it
// is not the default.
func (r *restorer) setMemPolicy(tid int, mode uint32, nodes []uint64) error {
	if mode == unix.MPOL_DEFAULT {
		return nil
	}
	var at, maxnode uint64
	if len(nodes) > 0 {
		scratch, err := r.scratch()
		if err != nil {
			return err
		}
		if err := r.tr.WriteValue(scratch, nodes); err != nil {
			return err
		}
		// The kernel reads one bit less than it is told.
		at, maxnode = scratch, uint64(len(nodes))*64+1
	}
	_, err := r.tr.Syscall(tid, unix.SYS_SET_MEMPOLICY, uint64(mode), at, maxnode)
	if errors.Is(err, unix.EINVAL) {
		r.log.Warn("a thread's memory policy names NUMA nodes this machine lacks; it has the default policy", "tid", tid, "mode", mode, "nodes", fmt.Sprintf("%#x", nodes))
		return nil
	}
	if err != nil {
		return fmt.Errorf("set the memory policy %#x of tid %d: %w", mode, tid, err)
	}
	return nil
}
