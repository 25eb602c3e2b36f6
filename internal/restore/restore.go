package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/steps"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// Options says what to restore and how.
type Options struct {
	// Dir is the image directory.
	Dir string
	// VDSO chooses between remap and proxy; empty means auto.
	VDSO VDSOMode
	// NoTimens keeps the processes in cryo's time namespace instead of one
	// whose monotonic and boot-time clocks continue from the dump.
	NoTimens bool
	// ShellJob gives the processes cryo's terminal where they had one.
	ShellJob bool
	// DropMissingCPU restores on a CPU that lacks what the processes may
	// depend on (cpu.Host.Check), leaving registers this CPU lacks at
	// their initial state.
	DropMissingCPU bool
	Log            *clog.Logger
	// Progress, if set, is told how many bytes of memory have been written
	// out of total.
	Progress func(done, total uint64)
	// FailAt makes the step of that name fail (see Steps).
	FailAt string
	// TCPClose restores established TCP connections closed: shut down
	// both ways, not connected (criu's --tcp-close).
	TCPClose bool
	// AllowChanged are files restored even though they changed since the
	// dump (files.VerifyOptions).
	AllowChanged []string
	// IgnoreCgroups leaves every process in the restoring cryo's cgroups,
	// wherever it was (criu's --manage-cgroups=ignore).
	IgnoreCgroups bool
	// Restored, if set, is called for each live process when it is
	// complete but for its registers, still held, before it resumes: the
	// hook the tests use to compare it with what was dumped (the state
	// oracle). The process still has cryo's scratch mapping, at
	// [scratchStart, scratchEnd).
	Restored func(pid int, scratchStart, scratchEnd uint64)
}

// Steps names the steps of a restore in order, for Options.FailAt and
// error messages. Each step is done for every process of the tree before
// the next, but for clone to pages, which are done for the root, then
// again for its children, and so on: a child is cloned from its parent
// once the parent's memory is made, to share it.
var Steps = []string{"images", "cpu", "stub", "timens", "clone", "teardown", "vdso", "vmas", "pages",
	"protect", "mm", "files", "fs", "task", "threads", "seccomp", "creds", "signals", "resume"}

// Stats reports what a restore did.
type Stats struct {
	// Pid is the root of the restored tree.
	Pid int
	// Processes counts the processes restored, zombies included.
	Processes int
	// Pids are the live processes, the root first.
	Pids []int
	VDSO vdso.Mode
	// Total is the time until the processes run.
	Total time.Duration
}

// restorer holds the state of one live process of the tree being
// restored.
type restorer struct {
	*tree
	c   *checkpoint
	pid int
	tr  *ptrace.Tracer // the restored process
	// uffd is cryo's descriptor of a userfaultfd of the process while its
	// pages are written (writePages), uffdNone otherwise or if it has
	// none, uffdUnopened until one is needed.
	uffd  int
	files *files.Restorer
	// inherited are the VMAs kept from the parent, keep their ranges,
	// sorted (findInherited).
	inherited map[uint64]bool // by start
	keep      []vdso.Range
	// regs are the threads' final registers, from the signals step.
	regs map[int]unix.PtraceRegs
}

// Restore brings the checkpoint in opts.Dir back to life and returns once
// its processes run. On failure everything it built is killed and the
// error names the failed step.
func Restore(ctx context.Context, opts Options) (*Stats, error) {
	start := time.Now()
	t := &tree{opts: opts, log: opts.Log, host: cpu.ReadHost(), shared: files.NewShared()}
	t.shared.CloseConnections = opts.TCPClose
	if t.opts.VDSO == "" {
		t.opts.VDSO = VDSOAuto
	}
	// Cancelled, the restore kills what it built at once: an injected
	// call that blocks holds the tracer, and the next step would never
	// come.
	stop := context.AfterFunc(ctx, t.built.kill)
	err := t.run(ctx)
	if !stop() {
		// Killed: say why, whatever the step that failed.
		err = errors.Join(err, fmt.Errorf("restore cancelled: %w", steps.Cancelled(ctx)))
	}
	t.close()
	if err != nil {
		if t.stub != nil {
			err = errors.Join(err, t.stub.KillAll())
		}
		t.built.reap(t.log)
		t.removeSysvShm()
		t.removeSysvIPC()
		if t.rootPid != 0 {
			return nil, fmt.Errorf("restore pid %d: %w", t.rootPid, err)
		}
		return nil, fmt.Errorf("restore %s: %w", opts.Dir, err)
	}
	t.stats.Pid = t.rootPid
	for _, r := range t.procs {
		t.stats.Pids = append(t.stats.Pids, r.pid)
	}
	t.stats.Total = time.Since(start)
	return &t.stats, nil
}

func (t *tree) run(ctx context.Context) error {
	head := []steps.Step{
		{Name: "images", Run: t.load},
		{Name: "cpu", Run: t.checkCPU},
		{Name: "stub", Run: func() error {
			if err := t.startStub(); err != nil {
				return err
			}
			return t.utsNamespace()
		}},
		{Name: "timens", Run: t.timeNamespace},
	}
	// The memory is made generation by generation: a child is cloned
	// from its parent once the parent's is in place, to inherit it.
	var gens [][]*pb.PstreeEntry
	build := func(g int) []steps.Step {
		each := func(f func(*restorer) error) func() error {
			return func() error { return t.eachOf(gens[g], f) }
		}
		return []steps.Step{
			{Name: "clone", Run: func() error { return t.cloneGeneration(gens[g], g == len(gens)-1) }},
			{Name: "teardown", Run: each((*restorer).teardown)},
			{Name: "vdso", Run: each((*restorer).placeVDSO)},
			{Name: "vmas", Run: func() error {
				// System V shared memory is found or made before the
				// first process attaches it, and a removed segment
				// marked for destruction once the last has.
				if g == 0 {
					if err := t.prepareSysvShm(); err != nil {
						return err
					}
					if err := t.prepareSysvIPC(); err != nil {
						return err
					}
				}
				if err := t.eachOf(gens[g], (*restorer).mapVMAs); err != nil {
					return err
				}
				if g == len(gens)-1 {
					if err := t.fillSysvIPC(); err != nil {
						return err
					}
					return t.destroySysvShm()
				}
				return nil
			}},
			{Name: "pages", Run: each(func(r *restorer) error {
				if err := r.writePages(); err != nil {
					return err
				}
				return r.makeAioRings()
			})},
		}
	}
	tail := []steps.Step{
		{Name: "protect", Run: t.each((*restorer).protect)},
		{Name: "mm", Run: t.each((*restorer).setMM)},
		{Name: "files", Run: func() error {
			if err := t.each((*restorer).openFiles)(); err != nil {
				return err
			}
			if err := t.each((*restorer).mapIOUrings)(); err != nil {
				return err
			}
			return t.shared.PtysOpened()
		}},
		{Name: "fs", Run: t.each((*restorer).restoreFS)},
		{Name: "task", Run: t.each((*restorer).restoreTask)},
		// The steps that make many calls to the tracer per thread make
		// them on the tracer thread (ptrace.Tracer.Run).
		{Name: "threads", Run: t.each(func(r *restorer) error {
			return r.tr.Run(func() error {
				if err := r.createThreads(); err != nil {
					return err
				}
				// Every thread was cloned from the leader, with its
				// scheduling, before any was set: read once.
				born, err := proc.ReadTaskStat(r.pid, r.pid)
				if err != nil {
					return err
				}
				for _, tid := range r.c.threads {
					if err := r.restoreThread(int(tid), r.c.cores[tid], born); err != nil {
						return err
					}
				}
				return r.restorePosixTimers()
			})
		})},
		{Name: "seccomp", Run: t.each((*restorer).restoreSeccomp)},
		{Name: "creds", Run: t.each((*restorer).restoreCreds)},
		{Name: "signals", Run: t.each(func(r *restorer) error {
			return r.tr.Run(func() error {
				if err := r.restoreOwners(); err != nil {
					return err
				}
				if err := r.queueSignals(); err != nil {
					return err
				}
				r.regs = map[int]unix.PtraceRegs{}
				for _, tid := range r.c.threads {
					rg, err := r.finalRegs(int(tid), r.c.cores[tid])
					if err != nil {
						return err
					}
					r.regs[int(tid)] = rg
				}
				return r.restoreThreadExtras()
			})
		})},
		{Name: "resume", Run: t.resume},
	}
	if !slices.Equal(steps.Names(slices.Concat(head, build(0), tail)), Steps) {
		panic("restore.Steps does not list the steps")
	}
	if err := steps.Run(ctx, t.log, t.opts.FailAt, ErrInjected, head); err != nil {
		return err
	}
	gens = t.generations()
	for _, r := range t.procs {
		t.toWrite += r.c.toWrite
	}
	for g := range gens {
		if err := steps.Run(ctx, t.log, t.opts.FailAt, ErrInjected, build(g)); err != nil {
			return err
		}
	}
	return steps.Run(ctx, t.log, t.opts.FailAt, ErrInjected, tail)
}

// resume lets every process of the tree run, children first, so that no
// parent runs before what it may wait for is there.
func (t *tree) resume() error {
	if err := t.shared.ResumeConnections(); err != nil {
		return err
	}
	// The processes hold their unlinked files: the links made for them at
	// the dump go before they run.
	if err := t.shared.RemoveLinks(); err != nil {
		t.log.Warn("remove link remaps", "err", err)
	}
	t.shared.ReapStandIns()
	for _, r := range t.procs {
		if r.opts.Restored != nil {
			start, end, err := r.tr.ScratchRange(r.pid)
			if err != nil {
				return err
			}
			r.opts.Restored(r.pid, start, end)
		}
	}
	for _, r := range slices.Backward(t.procs) {
		sig, err := r.stopIfStopped()
		if err != nil {
			return t.named(r.pid, err)
		}
		if err := r.tr.Resume(r.regs); err != nil {
			return t.named(r.pid, err)
		}
		if err := r.waitStopped(sig); err != nil {
			return t.named(r.pid, err)
		}
	}
	return nil
}

// checkCPU refuses a checkpoint whose process may need what this CPU
// lacks (cpu.Host.Check: the instruction sets its CPU offered, recorded
// in cpuinfo.img, and the register state its threads have in use),
// unless told to go on without it.
func (t *tree) checkCPU() error {
	// Every dump writes it: without it, nothing says what the process
	// may depend on.
	info := &pb.CpuinfoEntry{}
	if err := t.dir.ReadImage(image.Cpuinfo, 0, info); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	var used uint64
	for _, r := range t.procs {
		used |= r.c.fpUsed
	}
	err := t.host.Check(info, used)
	if err != nil && t.opts.DropMissingCPU {
		t.log.Warn("restoring on a CPU without features the process may use", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (--allow-missing-cpu-features restores anyway)", err)
	}
	return nil
}

// startStub starts the process the root is cloned from: cryo's own
// binary, stopped at its exec before it runs anything, with cryo's
// standard descriptors (a shell job's terminal comes from them).
func (t *tree) startStub() (err error) {
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}
	t.stub, err = ptrace.Spawn("/proc/self/exe", []string{"cryo-restore-stub"}, attr, unix.PTRACE_O_EXITKILL)
	if err != nil {
		return err
	}
	t.built.add(t.stub.Pid())
	// The scratch mapping, which every restored process inherits, must
	// be clear of everything the restore maps in any of them.
	maps, err := proc.ReadMaps(t.stub.Pid())
	if err != nil {
		return err
	}
	var used []vdso.Range
	for _, m := range maps {
		used = append(used, vdso.Range{Start: m.Start, End: m.End})
	}
	for _, r := range t.procs {
		used = append(used, r.dumpedRanges()...)
	}
	at, err := vdso.FindHole(used, 2*pageSize, taskSize/2, mmapMinAddr(), taskSize)
	if err != nil {
		return fmt.Errorf("place scratch: %w", err)
	}
	if err := t.pinStub(); err != nil {
		return err
	}
	return t.stub.PlaceScratch(at)
}

// takenRanges are the address ranges a new mapping must keep clear of:
// what process pid maps now, and every dumped VMA.
func (r *restorer) takenRanges(pid int) ([]vdso.Range, error) {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	used := r.dumpedRanges()
	for _, m := range maps {
		used = append(used, vdso.Range{Start: m.Start, End: m.End})
	}
	return used, nil
}

// dumpedRanges are the ranges the dumped VMAs cover, adjacent ones
// merged: a process of 60,000 VMAs may have far fewer such ranges, which
// the placements that search them copy.
func (r *restorer) dumpedRanges() []vdso.Range {
	var out []vdso.Range
	for v := range r.c.vmas.all() {
		// The VMAs are in order (checkVMAs).
		if n := len(out); n > 0 && out[n-1].End == v.start {
			out[n-1].End = v.end
			continue
		}
		out = append(out, vdso.Range{Start: v.start, End: v.end})
	}
	return out
}

// timeNamespace gives the stub a new time namespace for its children in
// which CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from the dump.
func (t *tree) timeNamespace() error {
	timens := t.procs[0].c.timens
	if t.opts.NoTimens || timens == nil {
		t.log.Info("no time namespace: the processes see this host's clocks")
		return nil
	}
	stub := t.stub.Pid()
	if _, err := t.stub.Syscall(stub, unix.SYS_UNSHARE, unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("unshare time namespace: %w", err)
	}
	own, err := proc.ReadTimensOffsets(0)
	if err != nil {
		return err
	}
	var text string
	for _, c := range []struct {
		name   string
		clock  int32
		want   uint64
		nsec   uint64
		ownOff int64
	}{
		{"monotonic", unix.CLOCK_MONOTONIC, timens.GetMonotonic().GetTvSec(), timens.GetMonotonic().GetTvNsec(), own.Monotonic},
		{"boottime", unix.CLOCK_BOOTTIME, timens.GetBoottime().GetTvSec(), timens.GetBoottime().GetTvNsec(), own.Boottime},
	} {
		var now unix.Timespec
		if err := unix.ClockGettime(c.clock, &now); err != nil {
			return err
		}
		// Offsets are from the host's clocks, which cryo sees shifted by
		// its own namespace's.
		off := int64(c.want)*1e9 + int64(c.nsec) - (now.Nano() - c.ownOff)
		sec, nsec := off/1e9, off%1e9
		if nsec < 0 {
			sec, nsec = sec-1, nsec+1e9
		}
		text += fmt.Sprintf("%s %d %d\n", c.name, sec, nsec)
	}
	path := fmt.Sprintf("/proc/%d/timens_offsets", stub)
	if err := writeProcFile(path, text); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	t.log.Info("time namespace", "offsets", text)
	return nil
}

// built are the processes a restore made.
type built struct {
	mu     sync.Mutex
	pids   []int
	killed bool
}

// add records a process made; one made after a kill is killed too.
func (b *built) add(pid int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pids = append(b.pids, pid)
	if b.killed {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// kill sends SIGKILL to every process made; the failed restore reaps them.
func (b *built) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.killed = true
	for _, pid := range b.pids {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// reapWait bounds how long a failed restore waits for what it killed.
const reapWait = 5 * time.Second

// reap waits for every process made, killed, to be gone, reaping those
// that are the caller's: a process of the tree whose parent died before
// it is handed to the nearest child subreaper, which a restore's caller
// is meant to be (cryo restore makes itself one), and so is a zombie of
// the tree once its parent is gone.
func (b *built) reap(log *clog.Logger) {
	b.mu.Lock()
	pids := slices.Clone(b.pids)
	b.mu.Unlock()
	deadline := time.Now().Add(reapWait)
	for _, pid := range pids {
		for {
			unix.Wait4(pid, nil, unix.WALL|unix.WNOHANG, nil)
			st, err := proc.ReadStat(pid)
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				log.Warn("a process the failed restore made is left to its parent", "pid", pid, "state", string(st.State), "parent", st.PPid)
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// writeProcFile writes a /proc file, which takes no O_CREAT or O_TRUNC.
func writeProcFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}
