package restore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// tree is a restore in progress: the processes of a checkpoint, made
// again parents first, each a child of its own parent as it was.
type tree struct {
	opts Options
	log  *clog.Logger
	host *cpu.Host
	dir  *image.Dir
	// entries are pstree.img's, parents before children, the root first.
	entries []*pb.PstreeEntry
	// procs are the live processes, in the order of entries; zombies are
	// the dead ones, made only to exit.
	procs   []*restorer
	zombies []*zombie
	rootPid int
	// cgroups are the sets of cgroups the processes go back into.
	cgroups cgroups
	// rootHelpers are the pids of the processes that make the session
	// and process group the root was in, whose leaders have exited, and
	// make the root in them (planRootSession).
	rootHelpers []int
	stub        *ptrace.Tracer
	built       built
	shared      *files.Shared
	// shmem is where each shared anonymous object is made, and shmemSize
	// how large.
	shmem     map[uint64]shmemAt
	shmemSize map[uint64]uint64
	// sysv are the System V shared memory segments by id, in the order
	// of sysvOrder.
	sysv      map[uint64]*sysvSegment
	sysvOrder []uint64
	// sysvSem and sysvMsg are the System V semaphore sets and message
	// queues of the checkpoint (sysvipc.go).
	sysvSem []*sysvSemSet
	sysvMsg []*sysvQueue
	// uts are the names of the UTS namespace the tree had of its own, nil
	// if it was in the dumping cryo's (utsNamespace).
	uts *pb.UtsnsEntry
	// threadExtras are what threads hold beyond their core entries
	// (threadextra.go), cpus the CPUs cryo may run on.
	threadExtras map[uint32]threadExtra
	cpus         unix.CPUSet
	// toWrite and written count the bytes of the pages step.
	toWrite, written uint64
	// compare are writeKept's buffers.
	compare [2][]byte
	stats   Stats
}

// zombie is a process that had exited and was not waited for, or a
// helper: a process made only to make a process group or a session whose
// leader has exited, which exits, and is reaped, once the group's members
// joined and the session's were born of it.
type zombie struct {
	entry  *pb.PstreeEntry
	helper bool
	// status is what its parent's wait reports.
	status unix.WaitStatus
	comm   string
	tr     *ptrace.Tracer
}

// each returns a step that runs f for every live process, in order.
func (t *tree) each(f func(*restorer) error) func() error {
	return func() error {
		for _, r := range t.procs {
			if err := f(r); err != nil {
				return t.named(r.pid, err)
			}
		}
		return nil
	}
}

// eachOf runs f for every live process of entries, in order.
func (t *tree) eachOf(entries []*pb.PstreeEntry, f func(*restorer) error) error {
	for _, e := range entries {
		r := t.proc(int(e.GetPid()))
		if r == nil {
			continue
		}
		if err := f(r); err != nil {
			return t.named(r.pid, err)
		}
	}
	return nil
}

// named adds the pid to an error about a process other than the root,
// whose pid the restore's error names already.
func (t *tree) named(pid int, err error) error {
	if pid == t.rootPid || err == nil {
		return err
	}
	return fmt.Errorf("pid %d: %w", pid, err)
}

// close releases what the loaded images hold open.
func (t *tree) close() {
	t.shared.Close()
	for _, r := range t.procs {
		r.c.files.Close()
	}
}

// load reads and checks the checkpoint: the process tree, then each live
// process's images, and the files each gets by path.
func (t *tree) load() error {
	dir, err := image.Open(t.opts.Dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	t.dir = dir
	var inv pb.InventoryEntry
	if err := dir.ReadImage(image.Inventory, 0, &inv); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	if inv.GetImgVersion() != image.ImgVersion {
		return imageErr("image version %d, want %d", inv.GetImgVersion(), image.ImgVersion)
	}
	if t.entries, err = image.ReadAll[pb.PstreeEntry](dir, image.Pstree, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	if len(t.entries) == 0 {
		return imageErr("pstree.img holds no process")
	}
	t.rootPid = int(t.entries[0].GetPid())
	live := map[uint32]bool{}
	seen := map[uint32]bool{}
	for i, e := range t.entries {
		pid := e.GetPid()
		switch {
		case pid == 0:
			return imageErr("pstree.img: entry %d has pid 0", i)
		case seen[pid]:
			return imageErr("pstree.img: pid %d twice", pid)
		case i > 0 && !live[e.GetPpid()]:
			return imageErr("pstree.img: the parent %d of pid %d is not a live process listed before it", e.GetPpid(), pid)
		}
		seen[pid] = true
		core := &pb.CoreEntry{}
		if err := dir.ReadImage(image.Core, pid, core); err != nil {
			return fmt.Errorf("%w: pid %d: %w", ErrImage, pid, err)
		}
		if core.Tc == nil {
			return imageErr("core-%d.img has no task state", pid)
		}
		if st := core.Tc.GetTaskState(); st == taskDead || st == taskHelper {
			if i == 0 {
				return imageErr("pstree.img: the root %d is not a live process (task state %d)", pid, st)
			}
			if st == taskHelper && e.GetPgid() != pid {
				return imageErr("pstree.img: helper %d does not lead a process group of its own", pid)
			}
			t.zombies = append(t.zombies, &zombie{entry: e, helper: st == taskHelper,
				status: unix.WaitStatus(core.Tc.GetExitCode()), comm: core.Tc.GetComm()})
			continue
		}
		live[pid] = true
		c, err := loadProcess(dir, e, map[uint32]*pb.CoreEntry{pid: core})
		if err != nil {
			return t.named(int(pid), err)
		}
		t.procs = append(t.procs, &restorer{tree: t, c: c, pid: c.pid, uffd: uffdNone})
	}
	// A child made with CLONE_FILES or CLONE_FS shares its parent's
	// descriptor table or filesystem context; nothing else can be made
	// shared.
	for _, kind := range []struct {
		what string
		id   func(*restorer) uint32
	}{
		{"descriptor table", func(r *restorer) uint32 { return r.ids().GetFilesId() }},
		{"filesystem context", func(r *restorer) uint32 { return r.ids().GetFsId() }},
	} {
		first := map[uint32]int{}
		for _, r := range t.procs {
			id := kind.id(r)
			o, ok := first[id]
			if !ok {
				first[id] = r.pid
				continue
			}
			if p := t.proc(int(r.c.task.GetPpid())); p == nil || kind.id(p) != id {
				return fmt.Errorf("%w: pid %d shares %s %d with pid %d, not with its parent", ErrUnsupported, r.pid, kind.what, id, o)
			}
		}
	}
	if err := t.checkSessions(); err != nil {
		return err
	}
	if err := t.planRootSession(); err != nil {
		return err
	}
	t.stats.Processes = len(t.procs)
	for _, z := range t.zombies {
		if !z.helper {
			t.stats.Processes++
		}
	}
	t.shmem, t.shmemSize = map[uint64]shmemAt{}, t.shmemSizes()
	if err := t.loadSysvShm(); err != nil {
		return err
	}
	if err := t.loadThreadExtras(); err != nil {
		return err
	}
	if err := t.loadSysvIPC(); err != nil {
		return err
	}
	if err := t.loadUTS(); err != nil {
		return err
	}
	if err := t.loadCgroups(&inv); err != nil {
		return err
	}
	// A pidfd is made again only of a process the restore brings back,
	// never of one outside the tree.
	members := maps.Clone(live)
	for _, z := range t.zombies {
		members[z.entry.GetPid()] = !z.helper
	}
	for _, r := range t.procs {
		for _, fd := range r.c.files.Fds {
			if p := r.c.files.File(fd.GetId()).GetPidfd(); p != nil && p.GetNspid() != -1 && !members[uint32(p.GetNspid())] {
				return t.named(r.pid, imageErr("fd %d: a pidfd of pid %d, which is not a process of the checkpoint", fd.GetFd(), p.GetNspid()))
			}
		}
	}
	for _, r := range t.procs {
		// A lock is taken by the process that held it.
		for _, l := range r.c.files.Locks {
			if !live[uint32(l.GetPid())] {
				return imageErr("filelocks.img: a lock of pid %d, which is not a live process of the checkpoint", l.GetPid())
			}
		}
		if err := r.verifyFiles(members); err != nil {
			return t.named(r.pid, err)
		}
	}
	return nil
}

// generations groups the entries by their depth in the tree: the root,
// its children, theirs, and so on, each in the order of entries but for
// the helpers, first (those that make a session before those that make
// a group, which may be born of them), as others are born of them.
func (t *tree) generations() [][]*pb.PstreeEntry {
	depth := map[uint32]int{}
	var gens [][]*pb.PstreeEntry
	for i, e := range t.entries {
		d := 0
		if i > 0 {
			d = depth[e.GetPpid()] + 1
		}
		depth[e.GetPid()] = d
		if d == len(gens) {
			gens = append(gens, nil)
		}
		gens[d] = append(gens[d], e)
	}
	helpers := map[*pb.PstreeEntry]bool{}
	for _, z := range t.zombies {
		helpers[z.entry] = z.helper
	}
	rank := func(e *pb.PstreeEntry) int {
		switch {
		case !helpers[e]:
			return 2
		case e.GetSid() == e.GetPid():
			return 0
		}
		return 1
	}
	for _, gen := range gens {
		slices.SortStableFunc(gen, func(a, b *pb.PstreeEntry) int { return rank(a) - rank(b) })
	}
	return gens
}

// cloneGeneration makes the processes of one generation of the tree with
// their PIDs: the root a child of the stub whose parent is cryo
// (CLONE_PARENT), so that cryo can wait for it; every other process a
// child of its restored parent, made by a clone3 injected into the
// parent, so that it is the parent's child as it was, and born with the
// parent's memory, which the restore has made by then: what the two
// shared copy-on-write they share again (inheritedRanges). A process that
// led a session or a process group makes it as soon as it is born, before
// its children, which are born in it. Once the last generation is there,
// the others join their groups, then the zombies exit.
func (t *tree) cloneGeneration(gen []*pb.PstreeEntry, last bool) error {
	for _, e := range gen {
		pid := int(e.GetPid())
		var tr *ptrace.Tracer
		var err error
		switch h := t.sessionHelper(e); {
		case pid == t.rootPid:
			tr, err = t.cloneRoot()
		case h != nil:
			tr, err = t.cloneChild(h.tr, int(h.entry.GetPid()), pid, unix.CLONE_PARENT)
		default:
			tr, err = t.cloneChild(t.proc(int(e.GetPpid())).tr, int(e.GetPpid()), pid, t.sharing(e))
		}
		if err != nil {
			return t.named(pid, err)
		}
		if err := t.lead(tr, e); err != nil {
			return t.named(pid, err)
		}
		if err := t.enterCgroups(pid); err != nil {
			return t.named(pid, err)
		}
		if r := t.proc(pid); r != nil {
			r.born(tr)
			if err := r.files.SessionTerminal(); err != nil {
				return t.named(pid, err)
			}
		}
		for _, z := range t.zombies {
			if int(z.entry.GetPid()) == pid {
				z.tr = tr
			}
		}
	}
	if !last {
		return nil
	}
	for _, e := range t.entries {
		if err := t.joinGroup(t.tracer(int(e.GetPid())), e); err != nil {
			return t.named(int(e.GetPid()), err)
		}
	}
	for _, r := range t.procs {
		if err := r.files.SessionForeground(); err != nil {
			return t.named(r.pid, err)
		}
	}
	// The helpers last: a zombie may be in a group a helper made.
	for _, helpers := range []bool{false, true} {
		for _, z := range t.zombies {
			if z.helper != helpers {
				continue
			}
			if err := t.exitZombie(z); err != nil {
				return t.named(int(z.entry.GetPid()), err)
			}
		}
	}
	return nil
}

// born takes the process cloned, traced by tr.
func (r *restorer) born(tr *ptrace.Tracer) {
	r.tr = tr
	r.files = files.NewRestorer(r.tr, r.pid, r.c.files, r.shared, r.opts.ShellJob)
	r.files.SetLog(r.log)
	if cr := r.c.cores[uint32(r.pid)].ThreadCore.GetCreds(); cr != nil {
		r.files.SetCreds(kernel.Creds{UID: cr.GetUid(), EUID: cr.GetEuid(), SUID: cr.GetSuid(),
			GID: cr.GetGid(), EGID: cr.GetEgid(), SGID: cr.GetSgid(), Groups: cr.Groups})
	}
	if tn := r.procs[0].c.timens; tn != nil && !r.opts.NoTimens { // timeNamespace made it so
		mono, boot := tn.GetMonotonic(), tn.GetBoottime()
		r.files.ClocksFromDump(time.Duration(mono.GetTvSec())*time.Second+time.Duration(mono.GetTvNsec()),
			time.Duration(boot.GetTvSec())*time.Second+time.Duration(boot.GetTvNsec()))
	}
}

// tracer is the tracer of process pid of the tree, live or zombie, once
// cloned.
func (t *tree) tracer(pid int) *ptrace.Tracer {
	if r := t.proc(pid); r != nil {
		return r.tr
	}
	for _, z := range t.zombies {
		if int(z.entry.GetPid()) == pid {
			return z.tr
		}
	}
	return nil
}

// cloneRoot makes the root, a child of the stub with CLONE_PARENT, or of
// the last helper that makes its session or group; the stub and the
// helpers are not needed after that.
func (t *tree) cloneRoot() (*ptrace.Tracer, error) {
	helpers, err := t.cloneRootHelpers(t.stub)
	if err != nil {
		return nil, err
	}
	creator := t.stub
	if len(helpers) > 0 {
		creator = helpers[len(helpers)-1]
	}
	tr, err := t.cloneChild(creator, creator.Pid(), t.rootPid, unix.CLONE_PARENT)
	if err != nil {
		return nil, err
	}
	for _, h := range helpers {
		// cryo's child: Exit reaps it.
		if err := h.Exit(0); err != nil {
			return nil, fmt.Errorf("end helper: %w", err)
		}
	}
	// Nothing else ends the stub: left alone it would stay stopped, a
	// child of cryo, for as long as cryo runs. The restored processes
	// keep the time namespace the root was born in; t.stub.KillAll
	// still reaches them through the session.
	if err := t.stub.Kill(); err != nil {
		return nil, fmt.Errorf("end the stub: %w", err)
	}
	return tr, nil
}

// cloneArgs are clone3's arguments for a process: with CLONE_PARENT the
// exit signal is the caller's own, and clone3 takes none.
func cloneArgs(flags uint64) kernel.CloneArgs {
	if flags&unix.CLONE_PARENT != 0 {
		return kernel.CloneArgs{Flags: flags}
	}
	return kernel.CloneArgs{Flags: flags, ExitSignal: uint64(unix.SIGCHLD)}
}

// sharing is what a process shares with its parent: CLONE_FILES and
// CLONE_FS when its descriptor table or filesystem context is its
// parent's.
func (t *tree) sharing(e *pb.PstreeEntry) uint64 {
	r, p := t.proc(int(e.GetPid())), t.proc(int(e.GetPpid()))
	if r == nil || p == nil {
		return 0
	}
	own, theirs := r.ids(), p.ids()
	var flags uint64
	if own.GetFilesId() == theirs.GetFilesId() {
		flags |= unix.CLONE_FILES
	}
	if own.GetFsId() == theirs.GetFsId() {
		flags |= unix.CLONE_FS
	}
	return flags
}

// ids are the kernel object ids of the process.
func (r *restorer) ids() *pb.TaskKobjIdsEntry { return r.c.cores[uint32(r.pid)].GetIds() }

// sharesFiles reports whether the process's descriptor table is one an
// earlier process of the tree, its parent, makes.
func (r *restorer) sharesFiles() bool {
	p := r.proc(int(r.c.task.GetPpid()))
	return p != nil && p.ids().GetFilesId() == r.ids().GetFilesId()
}

// cloneChild makes process pid a child of its restored parent ppid, still
// a copy of the stub as the parent is, sharing with it what flags say;
// with CLONE_PARENT, a child of ppid's parent.
func (t *tree) cloneChild(parent *ptrace.Tracer, ppid, pid int, flags uint64) (*ptrace.Tracer, error) {
	ids := []uint32{uint32(pid)}
	for _, r := range t.procs {
		if r.pid == pid {
			ids = r.c.threads
		}
	}
	t.awaitZombies(ids)
	got, err := parent.Clone3(ppid, cloneArgs(flags), pid)
	if err != nil {
		return nil, t.explainTaken(pid, err)
	}
	if got != pid {
		return nil, fmt.Errorf("clone3 gave pid %d, want %d", got, pid)
	}
	t.built.add(got)
	return parent.Child(got)
}

// exitZombie ends a process that was a zombie with the status it had, to
// be a zombie again for its parent to wait for. Its parent, still held,
// is sent a SIGCHLD then, which it had taken before the dump: it is taken
// back (the signals step restores the ones that were pending).
func (t *tree) exitZombie(z *zombie) error {
	pid := int(z.entry.GetPid())
	scratch, err := z.tr.WriteString(pid, z.comm)
	if err != nil {
		return err
	}
	if _, err := z.tr.Syscall(pid, unix.SYS_PRCTL, unix.PR_SET_NAME, scratch, 0, 0, 0); err != nil {
		return fmt.Errorf("set name %q: %w", z.comm, err)
	}
	if sig := z.status.Signal(); z.status.Signaled() && sig != unix.SIGKILL && sig != unix.SIGSTOP {
		// Its default action ends the process, without a core: a
		// process of cryo's ignores what cryo ignores.
		var dfl kernel.Sigaction
		if err := z.tr.WriteValue(scratch, dfl); err != nil {
			return err
		}
		if _, err := z.tr.Syscall(pid, unix.SYS_RT_SIGACTION, uint64(z.status.Signal()), scratch, 0, 8); err != nil {
			return fmt.Errorf("reset action of signal %d: %w", z.status.Signal(), err)
		}
		if err := z.tr.WriteValue(scratch, unix.Rlimit{}); err != nil {
			return err
		}
		if _, err := z.tr.Syscall(pid, unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, scratch, 0); err != nil {
			return fmt.Errorf("set core limit: %w", err)
		}
	}
	t.log.Info("zombie", "pid", pid, "status", fmt.Sprintf("%#x", int(z.status)), "helper", z.helper)
	if err := z.tr.Exit(z.status); err != nil {
		return err
	}
	if z.helper {
		if err := t.reapHelper(z); err != nil {
			return err
		}
	}
	return t.takeChildSignal(int(z.entry.GetPpid()))
}

// reapHelper makes the parent of a helper that exited wait for it, so
// that it leaves no trace.
func (t *tree) reapHelper(z *zombie) error {
	ppid, pid := int(z.entry.GetPpid()), int(z.entry.GetPid())
	parent := t.proc(ppid)
	if parent == nil {
		return errors.New("the helper's parent is not a live process of the checkpoint")
	}
	got, err := parent.tr.Syscall(ppid, unix.SYS_WAIT4, uint64(pid), 0, unix.WNOHANG|unix.WALL, 0)
	if err != nil {
		return fmt.Errorf("reap helper %d in pid %d: %w", pid, ppid, err)
	}
	if int(got) != pid {
		return fmt.Errorf("reap helper %d in pid %d: wait4 gave %d", pid, ppid, got)
	}
	return nil
}

// proc returns the live process pid of the tree, nil if none.
func (t *tree) proc(pid int) *restorer {
	for _, r := range t.procs {
		if r.pid == pid {
			return r
		}
	}
	return nil
}

// takeChildSignal takes back the SIGCHLD a zombie's exit sent its parent
// ppid, if it is pending.
func (t *tree) takeChildSignal(ppid int) error {
	parent := t.proc(ppid)
	if parent == nil {
		return errors.New("the zombie's parent is not a live process of the checkpoint")
	}
	scratch, err := parent.tr.Scratch(ppid)
	if err != nil {
		return err
	}
	// The set, then a zero timeout after it.
	set := uint64(1) << (unix.SIGCHLD - 1)
	if err := parent.tr.WriteMem(scratch, kernel.Encode([]uint64{set, 0, 0})); err != nil {
		return err
	}
	_, err = parent.tr.Syscall(ppid, unix.SYS_RT_SIGTIMEDWAIT, scratch, 0, scratch+8, 8)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("take back SIGCHLD in pid %d: %w", ppid, err)
	}
	return nil
}
