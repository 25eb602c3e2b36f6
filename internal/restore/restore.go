package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
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
	// NoTimens keeps the process in cryo's time namespace instead of one
	// whose monotonic and boot-time clocks continue from the dump.
	NoTimens bool
	// ShellJob gives the process cryo's terminal where it had one.
	ShellJob bool
	// DropMissingCPU restores on a CPU that lacks what the process may
	// depend on (cpu.Host.Check), leaving registers this CPU lacks at
	// their initial state.
	DropMissingCPU bool
	Log            *slog.Logger
	// Progress, if set, is told how many bytes of memory have been written
	// out of total.
	Progress func(done, total uint64)
	// FailAt makes the step of that name fail (see Steps).
	FailAt string
	// AllowChanged are files restored even though they changed since the
	// dump (files.VerifyOptions).
	AllowChanged []string
	// Restored, if set, is called when the process is complete but for its
	// registers, still held, before it resumes: the hook the tests use to
	// compare it with what was dumped (the state oracle). The process
	// still has cryo's scratch mapping, at [scratchStart, scratchEnd).
	Restored func(scratchStart, scratchEnd uint64)
}

// Steps names the steps of a restore in order, for Options.FailAt and
// error messages.
var Steps = []string{"images", "cpu", "stub", "timens", "clone", "teardown", "vdso", "vmas", "pages",
	"protect", "mm", "session", "files", "fs", "task", "threads", "creds", "signals", "resume"}

// Stats reports what a restore did.
type Stats struct {
	Pid  int
	VDSO vdso.Mode
	// Total is the time until the process runs.
	Total time.Duration
}

// restorer holds the state of one restore in progress.
type restorer struct {
	opts  Options
	log   *slog.Logger
	c     *checkpoint
	host  *cpu.Host
	pid   int
	stub  *ptrace.Tracer
	tr    *ptrace.Tracer // the restored process
	files *files.Restorer
	built built
	stats Stats
}

// Restore brings the checkpoint in opts.Dir back to life and returns once
// the process runs. On failure everything it built is killed and the
// error names the failed step.
func Restore(ctx context.Context, opts Options) (*Stats, error) {
	start := time.Now()
	r := &restorer{opts: opts, log: opts.Log, host: cpu.ReadHost()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.opts.VDSO == "" {
		r.opts.VDSO = VDSOAuto
	}
	// Cancelled, the restore kills what it built at once: an injected
	// call that blocks holds the tracer, and the next step would never
	// come.
	stop := context.AfterFunc(ctx, r.built.kill)
	err := r.run(ctx)
	if !stop() {
		// Killed: say why, whatever the step that failed.
		err = errors.Join(err, fmt.Errorf("restore cancelled: %w", steps.Cancelled(ctx)))
	}
	if r.files != nil {
		r.files.Close()
	}
	if r.c != nil {
		r.c.files.Close()
	}
	if err != nil {
		if r.stub != nil {
			err = errors.Join(err, r.stub.KillAll())
		}
		if r.pid != 0 {
			return nil, fmt.Errorf("restore pid %d: %w", r.pid, err)
		}
		return nil, fmt.Errorf("restore %s: %w", opts.Dir, err)
	}
	r.stats.Pid = r.pid
	r.stats.Total = time.Since(start)
	return &r.stats, nil
}

func (r *restorer) run(ctx context.Context) error {
	regs := map[int]unix.PtraceRegs{}
	list := []steps.Step{
		{Name: "images", Run: func() (err error) {
			if r.c, err = load(r.opts.Dir); err != nil {
				return err
			}
			r.pid = r.c.pid
			return r.verifyFiles()
		}},
		{Name: "cpu", Run: r.checkCPU},
		{Name: "stub", Run: r.startStub},
		{Name: "timens", Run: r.timeNamespace},
		{Name: "clone", Run: r.cloneProcess},
		{Name: "teardown", Run: r.teardown},
		{Name: "vdso", Run: r.placeVDSO},
		{Name: "vmas", Run: r.mapVMAs},
		{Name: "pages", Run: r.writePages},
		{Name: "protect", Run: r.protect},
		{Name: "mm", Run: r.setMM},
		{Name: "session", Run: r.restoreSession},
		{Name: "files", Run: r.openFiles},
		{Name: "fs", Run: r.restoreFS},
		{Name: "task", Run: r.restoreTask},
		{Name: "threads", Run: func() error {
			if err := r.createThreads(); err != nil {
				return err
			}
			for _, tid := range r.c.threads {
				if err := r.restoreThread(int(tid), r.c.cores[tid]); err != nil {
					return err
				}
			}
			return nil
		}},
		{Name: "creds", Run: r.restoreCreds},
		{Name: "signals", Run: func() error {
			if err := r.queueSignals(); err != nil {
				return err
			}
			for _, tid := range r.c.threads {
				rg, err := r.finalRegs(int(tid), r.c.cores[tid])
				if err != nil {
					return err
				}
				regs[int(tid)] = rg
			}
			return nil
		}},
		{Name: "resume", Run: func() error {
			// The process holds its unlinked files: the links made for
			// them at the dump go before it runs.
			if err := r.files.RemoveLinks(); err != nil {
				r.log.Warn("remove link remaps", "err", err)
			}
			if r.opts.Restored != nil {
				start, end, err := r.tr.ScratchRange(r.pid)
				if err != nil {
					return err
				}
				r.opts.Restored(start, end)
			}
			if err := r.stopIfStopped(); err != nil {
				return err
			}
			return r.tr.Resume(regs)
		}},
	}
	if !slices.Equal(steps.Names(list), Steps) {
		panic("restore.Steps does not list the steps")
	}
	return steps.Run(ctx, r.log, r.opts.FailAt, ErrInjected, list)
}

// checkCPU refuses a checkpoint whose process may need what this CPU
// lacks (cpu.Host.Check: the instruction sets its CPU offered, recorded
// in cpuinfo.img, and the register state its threads have in use),
// unless told to go on without it.
func (r *restorer) checkCPU() error {
	// Every dump writes it: without it, nothing says what the process
	// may depend on.
	info := &cpuinfo.CpuinfoEntry{}
	if err := r.c.dir.ReadImage(image.Cpuinfo, 0, info); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	var fpregs []*corex86.UserX86FpregsEntry
	for _, core := range r.c.cores {
		fpregs = append(fpregs, core.ThreadInfo.GetFpregs())
	}
	err := r.host.Check(info, fpregs)
	if err != nil && r.opts.DropMissingCPU {
		r.log.Warn("restoring on a CPU without features the process may use", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (--allow-missing-cpu-features restores anyway)", err)
	}
	return nil
}

// startStub starts the process the restored one is cloned from: cryo's
// own binary, stopped at its exec before it runs anything, with cryo's
// standard descriptors (a shell job's terminal comes from them).
func (r *restorer) startStub() (err error) {
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}
	r.stub, err = ptrace.Spawn("/proc/self/exe", []string{"cryo-restore-stub"}, attr, unix.PTRACE_O_EXITKILL)
	if err != nil {
		return err
	}
	r.built.add(r.stub.Pid())
	// The scratch mapping, which the restored process inherits, must be
	// clear of everything the restore maps.
	used, err := r.takenRanges(r.stub.Pid())
	if err != nil {
		return err
	}
	at, err := vdso.FindHole(used, 2*pageSize, taskSize/2, mmapMinAddr(), taskSize)
	if err != nil {
		return fmt.Errorf("place scratch: %w", err)
	}
	return r.stub.PlaceScratch(at)
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

// dumpedRanges are the ranges of the dumped VMAs.
func (r *restorer) dumpedRanges() []vdso.Range {
	var out []vdso.Range
	for _, v := range r.c.mm.Vmas {
		out = append(out, vdso.Range{Start: v.GetStart(), End: v.GetEnd()})
	}
	return out
}

// timeNamespace gives the stub a new time namespace for its children in
// which CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from the dump.
func (r *restorer) timeNamespace() error {
	if r.opts.NoTimens || r.c.timens == nil {
		r.log.Info("no time namespace: the process sees this host's clocks")
		return nil
	}
	stub := r.stub.Pid()
	if _, err := r.stub.Syscall(stub, unix.SYS_UNSHARE, unix.CLONE_NEWTIME); err != nil {
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
		{"monotonic", unix.CLOCK_MONOTONIC, r.c.timens.GetMonotonic().GetTvSec(), r.c.timens.GetMonotonic().GetTvNsec(), own.Monotonic},
		{"boottime", unix.CLOCK_BOOTTIME, r.c.timens.GetBoottime().GetTvSec(), r.c.timens.GetBoottime().GetTvNsec(), own.Boottime},
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
	r.log.Info("time namespace", "offsets", text)
	return nil
}

// cloneProcess makes the process to restore: a child of the stub with the
// dumped PID, whose parent is cryo (CLONE_PARENT), so that cryo can wait
// for it. The stub is not needed after that.
func (r *restorer) cloneProcess() error {
	// With CLONE_PARENT the exit signal is the stub's own, SIGCHLD.
	args := kernel.CloneArgs{Flags: unix.CLONE_PARENT}
	r.awaitZombies()
	got, err := r.stub.Clone3(r.stub.Pid(), args, r.pid)
	if err != nil {
		return r.explainTaken(r.pid, err)
	}
	if got != r.pid {
		return fmt.Errorf("clone3 gave pid %d, want %d", got, r.pid)
	}
	r.built.add(got)
	if r.tr, err = r.stub.Child(got); err != nil {
		return err
	}
	r.files = files.NewRestorer(r.tr, r.pid, r.c.files, r.opts.ShellJob)
	// Nothing else ends the stub: left alone it would stay stopped, a
	// child of cryo, for as long as cryo runs. The restored process, a
	// sibling, keeps the time namespace it was born in; r.stub.KillAll
	// still reaches the process through the session.
	if err := r.stub.Kill(); err != nil {
		return fmt.Errorf("end the stub: %w", err)
	}
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

// writeProcFile writes a /proc file, which takes no O_CREAT or O_TRUNC.
func writeProcFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}
