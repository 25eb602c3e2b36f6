package dump

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/steps"
)

// Options says what to dump and how.
type Options struct {
	Pid int
	// Dir is the image directory; it is created if missing.
	Dir string
	// LeaveRunning lets the target go on after the dump; by default it is
	// killed once the images are complete and synced.
	LeaveRunning bool
	// ShellJob allows descriptors of the caller's terminal.
	ShellJob bool
	// LinkRemap allows unlinked files that are still linked elsewhere:
	// each is linked back beside its old name (link_remap.ID) for the
	// restore, which removes the link. Without it they are refused.
	LinkRemap bool
	// Log receives the dump's progress; nil logs nothing.
	Log *slog.Logger
	// Progress, if set, is told how many bytes of memory have been copied
	// out of total.
	Progress func(done, total uint64)
	// FailAt makes the step of that name fail (see Steps): the hook the
	// tests use to prove that a failed dump leaves the target as it was.
	FailAt string
	// Frozen, if set, is called once every thread is stopped, before
	// anything is read or injected: the hook the tests use to see the
	// process as the dump does (the state oracle).
	Frozen func()
}

// Steps names the steps of a dump in order, for Options.FailAt.
var Steps = []string{"inspect", "seize", "memory", "threads", "task", "files", "pages", "images", "sync"}

// Stats reports what a dump did.
type Stats struct {
	Threads int
	VMAs    int
	Pages   uint64
	// Frozen is how long the target was stopped.
	Frozen time.Duration
	Total  time.Duration
}

// dumper holds the state of one dump in progress.
type dumper struct {
	opts   Options
	pid    int
	log    *slog.Logger
	tr     *ptrace.Tracer
	host   *cpu.Host
	status proc.Status
	stat   proc.Stat
	dir    *image.Dir

	// seccomp holds the seccomp mode of each thread under seccomp.
	seccomp map[int]int
	// vdsos are the vDSO code ranges no thread may be left inside.
	vdsos   []proc.Mapping
	files   *files.Table
	threads []*criucore.CoreEntry
	images  images
	stats   Stats
}

// Dump checkpoints process opts.Pid into opts.Dir. On failure, or when ctx
// is cancelled, the target is left running as it was and the images
// written so far are removed.
func Dump(ctx context.Context, opts Options) (*Stats, error) {
	start := time.Now()
	d := &dumper{opts: opts, pid: opts.Pid, log: opts.Log, host: cpu.ReadHost(), files: files.NewTable(opts.Pid, opts.ShellJob, opts.LinkRemap)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	err := d.run(ctx)
	d.files.Close()
	if err != nil {
		d.files.Abort()
		if d.tr != nil {
			err = errors.Join(err, d.tr.Detach())
		}
		d.removeImages()
		return nil, fmt.Errorf("dump pid %d: %w", d.pid, err)
	}
	d.stats.Total = time.Since(start)
	return &d.stats, nil
}

func (d *dumper) run(ctx context.Context) error {
	var mem *os.File
	var runs []run
	var shared []shmemRuns
	var frozen time.Time
	list := []steps.Step{
		{Name: "inspect", Run: d.inspect},
		{Name: "seize", Run: func() (err error) {
			frozen = time.Now()
			if d.tr, err = ptrace.Seize(d.pid, 0); err != nil {
				return err
			}
			d.log.Info("froze process", "pid", d.pid, "threads", len(d.tr.Threads()))
			// Anything read before the freeze may have changed.
			if err := d.inspect(); err != nil {
				return err
			}
			if err := d.suspendSeccomp(); err != nil {
				return err
			}
			if d.opts.Frozen != nil {
				d.opts.Frozen()
			}
			return nil
		}},
		{Name: "memory", Run: func() (err error) {
			// Before any injection, so that the scratch mapping is not
			// taken for the process's own.
			if mem, err = os.Open(proc.Path(d.pid, "mem")); err != nil {
				return err
			}
			runs, shared, err = d.dumpMemory(mem)
			return err
		}},
		{Name: "threads", Run: func() error {
			for _, tid := range d.tids() {
				core, err := d.dumpThread(tid)
				if err != nil {
					return fmt.Errorf("tid %d: %w", tid, err)
				}
				d.threads = append(d.threads, core)
			}
			d.stats.Threads = len(d.threads)
			d.images.cores = d.threads
			return d.dumpSeccomp()
		}},
		{Name: "task", Run: d.dumpProcess},
		{Name: "files", Run: d.dumpFiles},
		{Name: "pages", Run: func() error {
			// The last injection is done.
			d.addDeferredSignals()
			err := errors.Join(d.copyMemory(ctx, mem, runs, shared), mem.Close())
			if err != nil || !d.opts.LeaveRunning {
				return err
			}
			// Everything is read: the target may go on while the rest is
			// written.
			err = d.tr.Detach()
			d.tr = nil
			d.stats.Frozen = time.Since(frozen)
			return err
		}},
		{Name: "images", Run: func() error { return d.images.write(d.dir) }},
		{Name: "sync", Run: func() error { return d.dir.Sync() }},
	}
	if !slices.Equal(steps.Names(list), Steps) {
		panic("dump.Steps does not list the steps")
	}
	if err := steps.Run(ctx, d.log, d.opts.FailAt, ErrInjected, list); err != nil {
		if mem != nil {
			mem.Close()
		}
		return err
	}
	if d.opts.LeaveRunning {
		return nil
	}
	// The images are durable: the target can go.
	d.stats.Frozen = time.Since(frozen)
	return d.tr.Kill()
}

// copyMemory copies the process's pages into pages-1.img, and each
// shared memory object's into a pages file of its own.
func (d *dumper) copyMemory(ctx context.Context, mem *os.File, runs []run, shared []shmemRuns) error {
	var total, done uint64
	for _, r := range runs {
		total += r.n
	}
	for _, sh := range shared {
		for _, r := range sh.runs {
			total += r.n
		}
	}
	copyTo := func(w *image.PageWriter, err error, rs []run) error {
		if err != nil {
			return err
		}
		var progress func(uint64)
		if d.opts.Progress != nil {
			from := done
			progress = func(n uint64) { d.opts.Progress(from+n, total) }
		}
		st, err := copyPages(ctx, d.pid, mem, rs, w, progress)
		d.stats.Pages += st.pages
		done += st.pages * pageSize
		return errors.Join(err, w.Close())
	}
	w, err := d.dir.CreatePages(uint32(d.pid), 1)
	if err := copyTo(w, err, runs); err != nil {
		return err
	}
	for i, sh := range shared {
		w, err := d.dir.CreateShmemPages(sh.shmid, uint32(2+i))
		if err := copyTo(w, err, sh.runs); err != nil {
			return err
		}
	}
	// Each memfd's contents are read through its descriptor: pages no
	// mapping holds belong to the object too.
	buf := make([]byte, copyChunk)
	for i, m := range d.files.MemfdCopies() {
		w, err := d.dir.CreateShmemPages(m.Shmid, uint32(2+len(shared)+i))
		if err != nil {
			return err
		}
		n, err := m.Copy(w, buf)
		d.stats.Pages += n
		if err := errors.Join(err, w.Close()); err != nil {
			return fmt.Errorf("memfd %s: %w", m.Name, err)
		}
	}
	return nil
}

// tids lists the threads, the leader first: its core image carries the
// process-wide state.
func (d *dumper) tids() []int {
	tids := []int{d.pid}
	for _, t := range d.tr.Threads() {
		if t != d.pid {
			tids = append(tids, t)
		}
	}
	return tids
}

// inspect checks that the target is something this version can dump and
// prepares the image directory.
func (d *dumper) inspect() (err error) {
	if d.pid == os.Getpid() {
		return errors.New("cannot dump cryo itself")
	}
	if d.status, err = proc.ReadStatus(d.pid); errors.Is(err, fs.ErrNotExist) {
		return ErrNoProcess
	} else if err != nil {
		return err
	}
	// Only for a process that exists: a dump that fails removes a
	// directory it made.
	if d.dir == nil {
		if d.dir, err = image.Create(d.opts.Dir); err != nil {
			return err
		}
	}
	if d.stat, err = proc.ReadStat(d.pid); err != nil {
		return err
	}
	if d.status.State == 'Z' {
		return errors.New("process is a zombie")
	}
	if d.status.TracerPid != 0 && d.tr == nil {
		return fmt.Errorf("process is already traced by pid %d", d.status.TracerPid)
	}
	tids, err := proc.ReadTasks(d.pid)
	if err != nil {
		return err
	}
	for _, tid := range tids {
		b, err := os.ReadFile(proc.Path(d.pid, fmt.Sprintf("task/%d/children", tid)))
		if errors.Is(err, fs.ErrNotExist) && d.tr == nil {
			// The thread exited since the listing: only a frozen
			// process has a stable one.
			continue
		}
		if err != nil {
			return fmt.Errorf("read children: %w", err)
		}
		if kids := strings.Fields(string(b)); len(kids) > 0 {
			return fmt.Errorf("%w: the process has children (%s); process trees are not supported yet", ErrUnsupported, strings.Join(kids, " "))
		}
	}
	return nil
}

// removeImages deletes what a failed dump wrote.
func (d *dumper) removeImages() {
	if d.dir != nil {
		if err := d.dir.Discard(); err != nil {
			d.log.Warn("remove the images of the failed dump", "err", err)
		}
	}
}
