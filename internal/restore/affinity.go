package restore

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
)

// CPU affinity. The restore runs with every task it makes tied to the
// tracer's CPU (ptrace.Tracer.PinWithSession); once they are made, each
// thread gets the CPUs it was tied to at the dump, or, when it was not
// tied to any but the dumping cryo's, the CPUs this cryo may use.

// loadAffinities reads cryo-affinity.img, if the checkpoint has it.
func (t *tree) loadAffinities() error {
	as, err := t.dir.ReadAffinities()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	threads := map[uint32]bool{}
	for _, r := range t.procs {
		for _, tid := range r.c.threads {
			threads[tid] = true
		}
	}
	t.affinity = map[uint32]*unix.CPUSet{}
	for _, a := range as {
		switch {
		case !threads[a.TID]:
			return imageErr("%s: tid %d is no thread of the checkpoint", image.Affinities.FileName(0), a.TID)
		case t.affinity[a.TID] != nil:
			return imageErr("%s: tid %d twice", image.Affinities.FileName(0), a.TID)
		}
		set := new(unix.CPUSet)
		for i, w := range a.CPUs {
			for b := range 64 {
				if w&(1<<b) != 0 {
					set.Set(i*64 + b)
				}
			}
		}
		t.affinity[a.TID] = set
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

// restoreAffinity gives each thread its CPUs. A thread tied to CPUs none
// of which this machine has runs on cryo's, which the log says.
func (r *restorer) restoreAffinity() error {
	for _, tid := range r.c.threads {
		set := r.affinity[tid]
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
	}
	return nil
}
