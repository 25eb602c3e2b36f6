package dump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// Snapshot dumps
//
// A dump that lets its target run on need not hold it frozen while all its
// memory is read: once everything else is dumped, each process forks, by
// one injected clone3, a child that holds a copy-on-write copy of its
// memory at that instant (ptrace.Snapshot), and its private memory is read
// from that child while the process runs on; the child is then killed and
// its zombie reaped by a wait4 injected into the process, which is frozen
// again for that moment (a fork's zombie belongs to its parent, and only
// the parent can reap it).
//
// What a fork does not copy is read before the process goes on: shared
// memory (MAP_SHARED, memfds, which the child shares with it) and the
// areas a fork leaves out (MADV_DONTFORK) or empty (MADV_WIPEONFORK),
// held in cryo's memory until they are written, up to maxNoFork bytes.
//
// The child costs a PID and the page tables of a copy of the process's
// address space (2 MiB per GiB mapped), and every page the process writes
// while it is read is copied once more. The child is read through
// /proc/PID/mem, never with process_vm_readv, which would copy every page
// it reads (see copySnapshot). A process that cannot fork (its
// RLIMIT_NPROC or its cgroup's pids.max reached, no PID free, not enough
// memory) is read frozen, the log saying why; so is one that attaches
// System V shared memory, whose segment a fork would attach too (its
// attach and detach times and last pid would change).
//
// What the process may see meanwhile: a child in /proc/PID/task/*/children,
// in its process group and session (a signal to the group reaches it; it
// never runs, and dies as planned);
// no SIGCHLD (the child has no exit signal), and no wait but one with
// __WALL or __WCLONE reports it (such a wait reaps it once it is killed,
// or says a child is still there where there were none). It shares the
// process's descriptor table (CLONE_FILES), so it keeps no file open once
// the process closes it; but for an exec meanwhile, which gives the
// process a table of its own and leaves the child the old one, with the
// close-on-exec descriptors still open until the child is killed.

// maxNoFork is how many bytes of areas a fork does not copy a snapshot
// dump holds in memory; a process with more is read frozen.
const maxNoFork = 64 << 20

// snapshot is the child a process's private memory is read from.
type snapshot struct {
	tr  *ptrace.Tracer
	mem *os.File // its /proc/PID/mem
	// noFork holds the contents of the runs in areas a fork does not copy,
	// read while the process was frozen, by address.
	noFork map[uint64][]byte
}

// snapshotting says whether the dump reads private memory from snapshot
// children.
func (t *tree) snapshotting() bool { return t.opts.LeaveRunning && !t.opts.NoSnapshot }

// splitForked separates the areas whose pages a fork copies privately,
// which a snapshot child holds, from the others.
func splitForked(areas []area) (others, forked []area) {
	for _, a := range areas {
		if !a.shared && (a.dump != nil || a.all) && !a.noFork {
			forked = append(forked, a)
		} else {
			others = append(others, a)
		}
	}
	return others, forked
}

// takeSnapshot forks the frozen process into a snapshot child if it has
// private memory a fork copies, whose pages copySnapshot finds in the
// child's pagemap (the same as the process's at the fork) and reads
// there. The runs found so far, in areas a fork does not copy, are read
// now. When it cannot fork, the pages are found in the process's pagemap,
// to be read frozen, as without snapshots.
func (d *dumper) takeSnapshot() error {
	if len(d.deferred) == 0 {
		return nil
	}
	var size uint64
	for _, r := range d.runs {
		size += r.n
	}
	if size > maxNoFork {
		d.log.Warn("no snapshot: the memory is read with the process frozen", "pid", d.pid,
			"why", fmt.Sprintf("%d MiB of memory a fork does not copy (MADV_DONTFORK, MADV_WIPEONFORK), more than %d", size>>20, maxNoFork>>20))
	} else if d.attachesSysvShm() {
		d.log.Info("no snapshot: the memory is read with the process frozen", "pid", d.pid,
			"why", "it attaches System V shared memory, which a fork would attach too, changing the segment's attach times and last pid")
	} else if c, err := d.tr.Snapshot(d.view); errors.Is(err, ptrace.ErrExited) {
		return err
	} else if err != nil {
		d.log.Warn("no snapshot: the memory is read with the process frozen", "pid", d.pid, "why", err)
	} else {
		pid := c.Pid()
		d.snap = &snapshot{tr: c, noFork: map[uint64][]byte{}}
		if d.snap.mem, err = proc.Open(proc.Path(pid, "mem"), unix.O_RDONLY); err != nil {
			return fmt.Errorf("snapshot pid %d: %w", pid, err)
		}
		d.log.Info("snapshot: private memory read from a copy-on-write child", "pid", d.pid, "child", pid)
		for _, r := range d.runs {
			b := make([]byte, r.n)
			if _, err := d.mem.ReadAt(b, int64(r.addr)); err != nil {
				return fmt.Errorf("read memory at %#x: %w", r.addr, err)
			}
			d.snap.noFork[r.addr] = b
		}
		return nil
	}
	return d.findDeferred(d.view)
}

// attachesSysvShm reports whether the process attaches System V shared
// memory.
func (d *dumper) attachesSysvShm() bool {
	for _, v := range d.objectVMAs {
		if v.GetStatus()&image.VMAAreaSysvIPC != 0 {
			return true
		}
	}
	return false
}

// findDeferred finds the pages of the deferred areas in the pagemap of
// process pid, the process or its snapshot child, and adds them to the
// runs to copy.
func (d *dumper) findDeferred(pid int) error {
	pm, err := proc.Open(proc.Path(pid, "pagemap"), unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer pm.Close()
	var l runLister
	if err := l.add(pm, d.deferred); err != nil {
		return err
	}
	d.deferred = nil
	runs := l.runs
	for _, r := range runs {
		d.toCopy += r.n
	}
	d.runs = append(d.runs, runs...)
	slices.SortFunc(d.runs, func(a, b run) int { return cmp.Compare(a.addr, b.addr) })
	return nil
}

// copySnapshot copies the process's private memory: from the snapshot
// child, but the runs read while the process was frozen.
func (d *dumper) copySnapshot(ctx context.Context) error {
	s := d.snap
	if err := d.findDeferred(s.tr.Pid()); err != nil {
		return err
	}
	w, err := d.dir.CreatePages(uint32(d.pid), d.nextPagesID())
	if err != nil {
		return err
	}
	err = func() error {
		runs := d.runs
		for len(runs) > 0 {
			if b, ok := s.noFork[runs[0].addr]; ok {
				if err := w.WritePages(runs[0].addr, b); err != nil {
					return err
				}
				d.stats.Pages += runs[0].n / pageSize
				d.copied += runs[0].n
				runs = runs[1:]
				continue
			}
			n := 1
			for n < len(runs) && s.noFork[runs[n].addr] == nil {
				n++
			}
			// Through /proc/PID/mem: process_vm_readv pins the pages it
			// reads, and the kernel copies a copy-on-write page before it
			// lets it be pinned, which would copy the whole process.
			seg := slices.Clone(runs[:n])
			for i := range seg {
				seg[i].viaMem = true
			}
			if err := d.copyRuns(ctx, s.tr.Pid(), s.mem, w, seg); err != nil {
				return err
			}
			runs = runs[n:]
		}
		return nil
	}()
	return errors.Join(err, w.Close())
}

// endSnapshot kills the snapshot child, if any, and reaps it through its
// parent, the process, which it seizes again for that if the dump has
// let it go.
func (d *dumper) endSnapshot() error {
	s := d.snap
	if s == nil {
		return nil
	}
	d.snap = nil
	child := s.tr.Pid()
	var err error
	if s.mem != nil {
		err = s.mem.Close()
	}
	if err := errors.Join(err, s.tr.Kill()); err != nil {
		return fmt.Errorf("end snapshot pid %d: %w", child, err)
	}
	if d.tr != nil {
		return d.tr.ReapSnapshot(d.view, child)
	}
	start := time.Now()
	tr, err := ptrace.Seize(d.pid, 0)
	if err != nil {
		return fmt.Errorf("reap snapshot pid %d: %w", child, err)
	}
	if len(d.seccomp) > 0 {
		err = tr.SuspendSeccomp()
	}
	if err == nil {
		err = tr.ReapSnapshot(tr.View(), child)
	}
	err = errors.Join(err, tr.Detach())
	took := time.Since(start)
	d.stats.Frozen += took
	d.log.Info("snapshot reaped", "pid", d.pid, "child", child, "frozen", took)
	return err
}

// endSnapshots ends the snapshot of every process that has one.
func (t *tree) endSnapshots() error {
	var errs []error
	for _, d := range t.procs {
		errs = append(errs, t.named(d.pid, d.endSnapshot()))
	}
	return errors.Join(errs...)
}

// noForkFlags are the madvise bits of the areas a fork does not copy.
const noForkFlags = 1<<unix.MADV_DONTFORK | 1<<unix.MADV_WIPEONFORK
