package dump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
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
	// GhostLimit, if not 0, is the largest unlinked file with no name
	// left that the dump saves (criu's --ghost-limit): a larger one is
	// refused.
	GhostLimit int64
	// ExtUnixSk keeps a datagram unix socket connected to a bound one
	// outside the checkpoint, connected to that name again at restore
	// (criu's --ext-unix-sk). Without it such a socket is refused.
	ExtUnixSk bool
	// TCPSkipInFlight leaves behind the connections TCP listeners have not
	// accepted yet (criu's --skip-in-flight), each listener said in the
	// log. Without it such a listener is refused.
	TCPSkipInFlight bool
	// Log receives the dump's progress; nil logs nothing.
	Log *clog.Logger
	// Progress, if set, is told how many bytes of memory have been copied
	// out of total.
	Progress func(done, total uint64)
	// FailAt makes the step of that name fail (see Steps): the hook the
	// tests use to prove that a failed dump leaves the target as it was.
	FailAt string
	// NoSnapshot reads the memory of a dump that lets the target run on
	// with the target frozen, rather than from a copy-on-write child
	// while it runs (see Snapshot dumps in snapshot.go).
	NoSnapshot bool
	// Frozen, if set, is called once every thread is stopped, before
	// anything is read or injected: the hook the tests use to see the
	// process as the dump does (the state oracle).
	Frozen func()
}

// Steps names the steps of a dump in order, for Options.FailAt.
var Steps = []string{"inspect", "seize", "memory", "threads", "task", "files", "pages", "snapshot", "images", "sync"}

// Stats reports what a dump did.
type Stats struct {
	// Processes counts the processes of the tree, zombies included.
	Processes int
	Threads   int
	VMAs      int
	Pages     uint64
	// Frozen is how long the target was stopped: the freeze, and the
	// moments a snapshot dump stops it again to reap its snapshot child.
	Frozen time.Duration
	// Snapshots counts the processes whose private memory was read from a
	// snapshot child while they ran on.
	Snapshots int
	Total     time.Duration
}

// dumper holds the state of one process of the tree being dumped.
type dumper struct {
	*tree
	pid, ppid int
	// label is its security label, cryo's; "" without a security module.
	label string
	// semWaits and msgWaits are the System V semaphore sets and message
	// queues the process's threads were blocked on (noteSysvWait).
	semWaits, msgWaits []int32
	// view is the thread through which the process is read and injected
	// into (proc.View): pid, or the first live thread when the leader has
	// exited, whose memory and files are gone.
	view int
	// entry is its pstree.img entry.
	entry *pb.PstreeEntry
	// filesID and fsID name the descriptor table and the filesystem
	// context: its pid, or its parent's when it shares them.
	filesID, fsID int
	tr            *ptrace.Tracer
	// traced are the threads tr holds, sorted: a frozen process makes
	// none, and asking the tracer costs a switch to its thread.
	traced []int
	status proc.Status
	stat   proc.Stat

	// seccomp holds the seccomp mode of each thread under seccomp.
	seccomp map[int]int
	// loginUID is the audit login UID of the process, its view thread's:
	// nil on a kernel without audit support.
	loginUID *uint32
	// vdsos are the vDSO code ranges no thread may be left inside.
	vdsos   []proc.Mapping
	threads []*pb.CoreEntry
	// asked is what the process told of itself with its view thread's
	// asks (askProcess).
	asked  *processAnswers
	images images
	// mem is /proc/PID/mem, open from the memory step to the pages step;
	// runs and shared are the page runs found there.
	mem    *os.File
	runs   []run
	shared []shmemRuns
	// deferred are the areas whose pages a snapshot child holds: their
	// runs are not in runs yet.
	deferred []area
	// objectVMAs are the VMAs that map an object other than the process's
	// own memory (a file, shared memory), which the steps that tie the
	// tree's objects together consult; the others only go to the image.
	objectVMAs []*pb.VmaEntry
	// snap is the snapshot child of a dump that lets the process run on.
	snap *snapshot
	// sysvKeys are the keys the System V shared memory segments it
	// attaches were made with, by id.
	sysvKeys map[uint64]uint32
	// aioRings are the rings of its AIO contexts (aio.go).
	aioRings []aioRing
	// mapsIOUring says the process maps an io_uring: its threads are
	// asked for registered ring descriptors (refuseRegisteredRings).
	mapsIOUring bool
}

// Dump checkpoints process opts.Pid and its descendants into opts.Dir. On
// failure, or when ctx is cancelled, every process is left running as it
// was and the images written so far are removed.
func Dump(ctx context.Context, opts Options) (*Stats, error) {
	start := time.Now()
	t := &tree{opts: opts, log: opts.Log, host: cpu.ReadHost(), files: files.NewTable(opts.Pid, opts.ShellJob, opts.LinkRemap)}
	t.files.ExtUnixSk = opts.ExtUnixSk
	t.files.SkipInFlight = opts.TCPSkipInFlight
	t.files.Dropped = func(l netip.AddrPort, n uint32) {
		t.log.Warn("connections not accepted yet left behind (--skip-in-flight): their clients find them reset", "listener", l, "connections", n)
	}
	err := t.run(ctx)
	t.files.Close()
	if err != nil {
		// While the processes are still seized, if they are, which reap
		// their snapshots.
		err = errors.Join(err, t.endSnapshots())
	}
	for _, d := range t.procs {
		if d.mem != nil {
			d.mem.Close()
		}
	}
	if err != nil {
		t.files.Abort()
		err = errors.Join(err, t.detach())
		t.removeImages()
		return nil, fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	t.stats.Total = time.Since(start)
	return &t.stats, nil
}

func (t *tree) run(ctx context.Context) error {
	var frozen time.Time
	each := func(f func(d *dumper) error) func() error {
		return func() error {
			for _, d := range t.procs {
				if err := f(d); err != nil {
					if len(t.procs) > 1 {
						return fmt.Errorf("pid %d: %w", d.pid, err)
					}
					return err
				}
			}
			return nil
		}
	}
	list := []steps.Step{
		{Name: "inspect", Run: func() error {
			if err := t.inspect(); err != nil {
				return err
			}
			t.files.PrimeLocks()
			return nil
		}},
		{Name: "seize", Run: func() error {
			frozen = time.Now()
			if err := t.seize(); err != nil {
				return err
			}
			if err := each((*dumper).suspendSeccomp)(); err != nil {
				return err
			}
			t.files.ReadLocks()
			if t.opts.Frozen != nil {
				t.opts.Frozen()
			}
			return nil
		}},
		{Name: "memory", Run: each(func(d *dumper) (err error) {
			// Before any injection, so that the scratch mapping is not
			// taken for the process's own.
			if d.mem, err = proc.Open(proc.Path(d.view, "mem"), unix.O_RDONLY); err != nil {
				return err
			}
			return d.dumpMemory(d.mem)
		})},
		{Name: "threads", Run: func() error {
			// On the tracer thread: a dozen calls to it per thread.
			if err := each(func(d *dumper) error { return d.tr.Run(d.dumpThreads) })(); err != nil {
				return err
			}
			return t.refuseParentDeathSignals()
		}},
		{Name: "task", Run: each((*dumper).dumpProcess)},
		{Name: "files", Run: func() error {
			if err := each((*dumper).dumpFiles)(); err != nil {
				return err
			}
			if err := t.files.FinishIOUrings(); err != nil {
				return err
			}
			if err := t.files.LockConnections(); err != nil {
				return err
			}
			if err := t.refuseMappedShmemFd(); err != nil {
				return err
			}
			if err := t.shareMemory(); err != nil {
				return err
			}
			if err := t.dumpSysvShm(); err != nil {
				return err
			}
			return t.dumpSysvIPC()
		}},
		{Name: "pages", Run: func() error {
			t.toCopy = t.memoryToCopy()
			if err := each((*dumper).takeSnapshot)(); err != nil {
				return err
			}
			if err := each(func(d *dumper) error {
				// The last injection is done.
				d.addDeferredSignals()
				var err error
				if d.snap == nil {
					err = d.copyOwn(ctx)
				}
				err = errors.Join(err, d.copyShmem(ctx), d.mem.Close())
				d.mem = nil
				return err
			})(); err != nil {
				return err
			}
			if err := t.copyObjects(); err != nil || !t.opts.LeaveRunning {
				return err
			}
			if err := each((*dumper).refuseAioInFlight)(); err != nil {
				return err
			}
			// Everything is read but what the snapshots hold: the tree
			// may go on while that is read and the rest written.
			if err := t.files.ReleaseConnections(); err != nil {
				return err
			}
			err := t.detach()
			t.stats.Frozen = time.Since(frozen)
			return err
		}},
		{Name: "snapshot", Run: each(func(d *dumper) error {
			if d.snap == nil {
				return nil
			}
			t.stats.Snapshots++
			if err := d.copySnapshot(ctx); err != nil {
				return errors.Join(err, d.endSnapshot())
			}
			// The images are whole: a child that could not be reaped
			// (the process exited, or another tracer holds it) is no
			// reason to throw them away.
			if err := d.endSnapshot(); err != nil {
				d.log.Warn("snapshot child left behind", "pid", d.pid, "err", err)
			}
			return nil
		})},
		{Name: "images", Run: func() error {
			if err := each(func(d *dumper) error { return d.images.write(t.dir, uint32(d.pid)) })(); err != nil {
				return err
			}
			return t.writeImages()
		}},
		{Name: "sync", Run: func() error { return t.dir.Sync() }},
	}
	if !slices.Equal(steps.Names(list), Steps) {
		panic("dump.Steps does not list the steps")
	}
	if err := steps.Run(ctx, t.log, t.opts.FailAt, ErrInjected, list); err != nil {
		return err
	}
	if t.opts.LeaveRunning {
		return nil
	}
	// The images are durable: the tree can go, its connections locked
	// until the restore.
	if err := each((*dumper).refuseAioInFlight)(); err != nil {
		return err
	}
	if err := t.files.KeepConnections(); err != nil {
		return err
	}
	t.stats.Frozen = time.Since(frozen)
	return t.kill()
}

// dumpThreads collects the core of every thread, the leader first, and
// the seccomp filters.
func (d *dumper) dumpThreads() error {
	switch uid, err := proc.ReadLoginUID(d.view); {
	case errors.Is(err, fs.ErrNotExist):
		// A kernel without audit support: no process has one.
	case err != nil:
		return err
	default:
		d.loginUID = &uid
	}
	for _, tid := range d.tids() {
		dumpThread := d.dumpThread
		if tid == d.pid && d.leaderExited() {
			dumpThread = d.dumpExitedLeader
		}
		core, err := dumpThread(tid)
		if err == nil {
			d.noteSysvWait(core.GetThreadInfo().GetGpregs())
			err = d.images.holdThreadInfo(core)
		}
		if err != nil {
			return fmt.Errorf("tid %d: %w", tid, err)
		}
		d.threads = append(d.threads, core)
	}
	d.stats.Threads += len(d.threads)
	d.images.cores = d.threads
	return d.dumpSeccomp()
}

// copyOwn copies the process's pages, read from it, into a pages image.
func (d *dumper) copyOwn(ctx context.Context) error {
	w, err := d.dir.CreatePages(uint32(d.pid), d.nextPagesID())
	if err != nil {
		return err
	}
	return errors.Join(d.copyRuns(ctx, d.view, d.mem, w, d.runs), w.Close())
}

// copyShmem copies each shared memory object's pages into a pages image
// of its own, read from the process.
func (d *dumper) copyShmem(ctx context.Context) error {
	for _, sh := range d.shared {
		w, err := d.dir.CreateShmemPages(sh.shmid, d.nextPagesID())
		if err != nil {
			return err
		}
		if err := errors.Join(d.copyRuns(ctx, d.view, d.mem, w, sh.runs), w.Close()); err != nil {
			return err
		}
	}
	return nil
}

// copyRuns copies runs into w, read from process pid (through mem, its
// /proc/PID/mem, where they must be), reporting progress.
func (d *dumper) copyRuns(ctx context.Context, pid int, mem *os.File, w *image.PageWriter, rs []run) error {
	var progress func(uint64)
	if d.opts.Progress != nil {
		from := d.copied
		progress = func(n uint64) { d.opts.Progress(from+n, d.toCopy) }
	}
	st, err := copyPages(ctx, pid, mem, rs, w, progress)
	d.stats.Pages += st.pages
	d.copied += st.pages * pageSize
	return err
}

// leaderExited reports whether the thread group leader has exited while
// the other threads run on.
func (d *dumper) leaderExited() bool { return d.view != d.pid }

// tids lists the threads, the leader first, also when it has exited: its
// core image carries the process-wide state.
func (d *dumper) tids() []int {
	tids := []int{d.pid}
	for _, t := range d.traced {
		if t != d.pid {
			tids = append(tids, t)
		}
	}
	return tids
}

// inspect checks that the process is something this version can dump.
func (d *dumper) inspect() (err error) {
	if d.pid == os.Getpid() {
		return errors.New("cannot dump cryo itself")
	}
	if d.tr != nil {
		d.view = d.tr.View()
	} else if d.view, err = proc.View(d.pid); errors.Is(err, fs.ErrNotExist) {
		return ErrNoProcess
	} else if err != nil {
		return err
	}
	// A leader that has exited keeps its process's ids but not its mm,
	// files or umask: those the view shows.
	if d.status, err = proc.ReadStatus(d.view); errors.Is(err, fs.ErrNotExist) {
		return ErrNoProcess
	} else if err != nil {
		return err
	}
	if d.stat, err = proc.ReadStat(d.view); err != nil {
		return err
	}
	if d.status.State == 'Z' {
		return errors.New("process is a zombie")
	}
	if d.leaderExited() {
		// The process's name is its leader's.
		leader, err := proc.ReadStat(d.pid)
		if err != nil {
			return err
		}
		d.stat.Comm = leader.Comm
	}
	if d.status.TracerPid != 0 && d.tr == nil {
		return fmt.Errorf("process is already traced by pid %d", d.status.TracerPid)
	}
	if d.tr == nil {
		if err := refuseVforkWait(d.pid); err != nil {
			return err
		}
	}
	if m := d.status.UntagMask; m != 0 && m != ^uint64(0) {
		// Its tagged pointers would fault after a restore, which does
		// not enable it.
		return fmt.Errorf("%w: the process uses linear address masking (ARCH_ENABLE_TAGGED_ADDR, untag_mask %#x)", ErrUnsupported, m)
	}
	// A restored process is born with cryo's security label (AppArmor
	// profile, SELinux context), and the restore does not change it:
	// another would let the process do what it could not, or not what it
	// could.
	own, err := d.ownExtras()
	if err != nil {
		return err
	}
	if d.label, err = proc.ReadSecurityLabel(d.view); err != nil || d.label != own.label {
		return cmp.Or(err, fmt.Errorf("%w: the process's security label is %q, not cryo's %q, which a restored process would have", ErrUnsupported, d.label, own.label))
	}
	if f := d.status.ThreadFeatures; len(f) > 0 {
		// A restore does not enable them, and the shadow stack's
		// mapping would come back as plain memory.
		return fmt.Errorf("%w: the process has x86 thread features enabled (arch_prctl ARCH_SHSTK_ENABLE: %s)", ErrUnsupported, strings.Join(f, " "))
	}
	return nil
}
