package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// tree is a dump in progress: the process asked for and its descendants,
// and what they share (the image directory, the open files).
type tree struct {
	opts  Options
	log   *clog.Logger
	host  *cpu.Host
	dir   *image.Dir
	files *files.Table
	// procs are the live processes, parents before children, the root
	// first; dead are the others pstree.img lists.
	procs []*dumper
	dead  []dead
	// threadExtras are the threads' records of cryo-thread-extra.img;
	// own what cryo's own are (see ownExtras).
	threadExtras []image.ThreadExtra
	own          *ownExtras
	// cgroups are the sets of cgroups of the processes (cgroup.go).
	cgroups cgSets
	// sharedObjects are the shared memory objects several processes map.
	sharedObjects []sharedObject
	// sysvShm are the System V shared memory segments the tree attaches.
	sysvShm []sysvSegment
	// sysvSem and sysvMsg are the System V semaphore sets and message
	// queues the tree uses (sysvipc.go).
	sysvSem []image.SemSet
	sysvMsg []image.MsgQueue
	// order is every process, zombies included, as pstree.img lists them.
	order   []*pb.PstreeEntry
	pagesID uint32
	// toCopy and copied count the bytes of memory of the pages step.
	toCopy, copied uint64
	timens         *pb.TimensEntry
	// ownUTS is whether the root is in another UTS namespace than cryo:
	// the dump keeps its host and domain names, and a restore makes one
	// with them.
	ownUTS bool
	// seccomp holds the filters of every thread of the tree in filter
	// mode (dumpSeccomp).
	seccomp pb.SeccompEntry
	stats   Stats
}

// dead is a process of the tree that runs no more: a zombie its parent
// has not waited for (taskDead), or a helper a restore makes only to make
// a process group whose leader has exited (taskHelper). Its core holds
// its task state alone.
type dead struct {
	pid   int
	state uint32
	comm  string
	flags uint32
	// status is what its parent's wait will report.
	status int
}

// nextPagesID numbers the pages images from 1.
func (t *tree) nextPagesID() uint32 {
	t.pagesID++
	return t.pagesID
}

// inspect checks the root before anything is stopped, and makes the image
// directory once the process is known to exist.
func (t *tree) inspect() error {
	root := &dumper{tree: t, pid: t.opts.Pid}
	if err := root.inspect(); err != nil {
		return err
	}
	var err error
	if t.ownUTS, err = checkNamespaces(root.view); err != nil {
		return err
	}
	if t.dir == nil {
		if t.dir, err = image.Create(t.opts.Dir); err != nil {
			return err
		}
	}
	t.files.SaveGhosts(t.dir, t.opts.GhostLimit)
	return nil
}

// seize stops the root, then each child of a stopped process, and its
// children in turn: a stopped process forks no more, so a child is
// either listed or not born yet when its parent is frozen, and the tree
// is whole once every listed child is stopped.
func (t *tree) seize() error {
	queue := []int{t.opts.Pid}
	parent := map[int]int{t.opts.Pid: 0}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		d := &dumper{tree: t, pid: pid, ppid: parent[pid], filesID: pid, fsID: pid}
		// The root was inspected by the step before, a moment ago; every
		// process is inspected again once frozen.
		if pid != t.opts.Pid {
			if err := d.inspect(); err != nil {
				if d.status.State != 'Z' {
					return t.named(pid, err)
				}
				if err := t.addZombie(pid, parent[pid], d.stat); err != nil {
					return t.named(pid, err)
				}
				continue
			}
		}
		var err error
		if d.tr, err = ptrace.Seize(pid, 0); err != nil {
			// A child may have exited since its parent was frozen.
			if st, serr := proc.ReadStat(pid); pid != t.opts.Pid && serr == nil && st.State == 'Z' {
				if err := t.addZombie(pid, parent[pid], st); err != nil {
					return t.named(pid, err)
				}
				continue
			}
			return t.named(pid, err)
		}
		t.procs = append(t.procs, d)
		d.traced = d.tr.Threads()
		t.log.Info("froze process", "pid", pid, "threads", len(d.traced))
		// Anything read before the freeze may have changed.
		if err := d.inspect(); err != nil {
			return t.named(pid, err)
		}
		if err := t.checkAlone(d); err != nil {
			return t.named(pid, err)
		}
		d.entry = &pb.PstreeEntry{
			Pid: uint32(pid), Ppid: uint32(parent[pid]),
			Pgid: uint32(d.stat.Pgrp), Sid: uint32(d.stat.Session),
		}
		t.order = append(t.order, d.entry)
		kids, err := children(pid, d.traced)
		if err != nil {
			return t.named(pid, err)
		}
		for _, k := range kids {
			parent[k] = pid
		}
		queue = append(queue, kids...)
	}
	t.stats.Processes = len(t.order)
	pids := make([]int, 0, len(t.order))
	for _, e := range t.order {
		pids = append(pids, int(e.GetPid()))
	}
	t.files.SetProcesses(pids)
	return t.checkSessions()
}

// named adds the pid to an error about a process of the tree other than
// the root, whose pid the dump's error names already.
func (t *tree) named(pid int, err error) error {
	if pid == t.opts.Pid || err == nil {
		return err
	}
	return fmt.Errorf("pid %d: %w", pid, err)
}

// children lists the children of the threads tids of a stopped process.
func children(pid int, tids []int) ([]int, error) {
	var out []int
	for _, tid := range tids {
		b, err := proc.ReadTaskChildren(pid, tid)
		if err != nil {
			return nil, fmt.Errorf("read children: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			k, err := strconv.Atoi(f)
			if err != nil || k <= 0 {
				return nil, fmt.Errorf("read children of tid %d: %q", tid, f)
			}
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// refuseVforkWait refuses a process one of whose threads shares its
// memory with a child (vfork, or clone with CLONE_VM): a thread waiting in
// vfork for its child to exec or exit cannot be stopped, and seizing it
// would wait as long. checkAlone would refuse such a child anyway.
func refuseVforkWait(pid int) error {
	tids, err := proc.ReadTasks(pid)
	if err != nil {
		return err
	}
	for _, tid := range tids {
		kids, err := children(pid, []int{tid})
		if errors.Is(err, fs.ErrNotExist) {
			continue // a thread that has exited since: it is not frozen yet
		}
		if err != nil {
			return err
		}
		for _, k := range kids {
			// Each child with the thread that made it: a leader that has
			// exited has no memory, which kcmp finds equal to another's.
			if same, err := kernel.Kcmp(tid, k, kernel.KcmpVM, 0, 0); err == nil && same == 0 {
				return fmt.Errorf("%w: its child pid %d shares its memory (vfork, or clone with CLONE_VM): a parent in vfork cannot be stopped until the child execs or exits; dump again once it has", ErrUnsupported, k)
			}
		}
	}
	return nil
}

// addZombie records a child that has exited and not been waited for. A
// zombie leader whose other threads are still there but could not be
// seized (they are exiting) is refused: a leader that has exited while its
// threads run on is a live process, seized through them.
func (t *tree) addZombie(pid, ppid int, st proc.Stat) error {
	if err := refuseThreadedZombie(pid); err != nil {
		return err
	}
	t.log.Info("zombie", "pid", pid, "parent", ppid, "status", fmt.Sprintf("%#x", st.ExitCode))
	t.dead = append(t.dead, dead{pid: pid, state: taskDead, comm: st.Comm, flags: st.Flags, status: st.ExitCode})
	t.order = append(t.order, &pb.PstreeEntry{
		Pid: uint32(pid), Ppid: uint32(ppid),
		Pgid: uint32(st.Pgrp), Sid: uint32(st.Session), Threads: []uint32{uint32(pid)},
	})
	return nil
}

// refuseThreadedZombie refuses a zombie leader whose other threads are
// still listed.
func refuseThreadedZombie(pid int) error {
	if tids, err := proc.ReadTasks(pid); err == nil && len(tids) > 1 {
		return fmt.Errorf("%w: the thread group leader has exited, and %d threads that are still there could not be seized", ErrUnsupported, len(tids)-1)
	}
	return nil
}

// namespaces are those a process of the tree must share with the root:
// a restore makes every process in the namespaces of the first.
var namespaces = []string{"mnt", "net", "pid", "ipc", "uts", "user", "cgroup", "time"}

// checkNamespaces refuses a root process in other namespaces than cryo's
// but its time and UTS namespaces, whose clock offsets and names the dump
// keeps and a restore makes a namespace with: the process would come back
// in cryo's, its network, mounts, users, cgroup root and pids not its
// own. cryo keeps the System V objects of its own IPC namespace only.
// ownUTS is whether the UTS namespace is another than cryo's.
func checkNamespaces(pid int) (ownUTS bool, err error) {
	for _, ns := range namespaces {
		if ns == "time" {
			continue
		}
		own, errOwn := os.Readlink("/proc/self/ns/" + ns)
		its, errIts := os.Readlink(proc.Path(pid, "ns/"+ns))
		switch {
		case errors.Is(errOwn, fs.ErrNotExist) && errors.Is(errIts, fs.ErrNotExist):
			continue // a namespace this kernel lacks
		case errOwn != nil:
			return false, errOwn
		case errIts != nil:
			return false, errIts
		case its != own && ns == "uts":
			ownUTS = true
		case its != own:
			return false, fmt.Errorf("%w: the process is in %s namespace %s, not cryo's %s: a restore makes no such namespace, and it would come back in cryo's (dump it from within its namespaces)", ErrUnsupported, ns, its, own)
		}
	}
	return ownUTS, nil
}

// checkAlone refuses a process that shares with another process of the
// tree what a restore could not share again, or that lives in other
// namespaces than the root. A descriptor table (CLONE_FILES) or a
// filesystem context (CLONE_FS) shared with its parent is made shared
// again, as the parent's; an address space or signal handlers shared
// with another process (CLONE_VM without a thread: vfork) are refused,
// and so is a table or context shared otherwise.
func (t *tree) checkAlone(d *dumper) error {
	root := t.procs[0]
	if d == root {
		return nil
	}
	for _, ns := range namespaces {
		a, errA := os.Readlink(proc.Path(root.view, "ns/"+ns))
		b, errB := os.Readlink(proc.Path(d.view, "ns/"+ns))
		if errA != nil || errB != nil {
			continue // a namespace this kernel lacks
		}
		if a != b {
			return fmt.Errorf("%w: the process is in %s, the root pid %d in %s", ErrUnsupported, b, root.pid, a)
		}
	}
	same := func(o *dumper, typ kernel.KcmpType) (bool, error) {
		r, err := kernel.Kcmp(d.view, o.view, typ, 0, 0)
		if err != nil {
			return false, fmt.Errorf("compare with pid %d: %w", o.pid, err)
		}
		return r == 0, nil
	}
	for _, o := range t.procs {
		if o.pid == d.ppid {
			// Shared with the parent: the restore clones it so.
			if s, err := same(o, kernel.KcmpFiles); err != nil {
				return err
			} else if s {
				d.filesID = o.filesID
			}
			if s, err := same(o, kernel.KcmpFS); err != nil {
				return err
			} else if s {
				d.fsID = o.fsID
			}
		}
	}
	for _, o := range t.procs {
		if o == d {
			continue
		}
		for _, typ := range []kernel.KcmpType{kernel.KcmpVM, kernel.KcmpFiles, kernel.KcmpFS, kernel.KcmpSighand} {
			s, err := same(o, typ)
			if err != nil {
				return err
			}
			switch {
			case !s:
			case typ == kernel.KcmpFiles && d.filesID == o.filesID, typ == kernel.KcmpFS && d.fsID == o.fsID:
			default:
				return fmt.Errorf("%w: the process shares its %s with pid %d", ErrUnsupported, typ, o.pid)
			}
		}
	}
	return nil
}

// checkSessions refuses a tree whose sessions and process groups a
// restore could not make again. A restored process is born in the session
// and group of its parent (the root in cryo's, or one its restore makes
// again); it can then make a session or group of its own, or join a group
// of its session whose leader is restored before it. A session or group
// whose leader has exited is made again by a helper with the leader's
// pid, listed here: a process in a session that is not its parent's is
// born of the session's helper (CLONE_PARENT), which the parent makes.
func (t *tree) checkSessions() error {
	root := t.order[0]
	byPid := map[uint32]*pb.PstreeEntry{}
	leaders := map[uint32]bool{}
	for _, e := range t.order {
		byPid[e.GetPid()] = e
		if e.GetPgid() == e.GetPid() {
			leaders[e.GetPgid()] = true
		}
	}
	// sessions are the sessions whose helpers are made here.
	sessions := map[uint32]bool{}
	helper := func(e, p *pb.PstreeEntry, id uint32, what string) {
		t.log.Info(what+" without its leader: a helper will make it", what, id, "member", e.GetPid())
		leaders[id] = true
		sessions[id] = id == e.GetSid()
		h := &pb.PstreeEntry{
			Pid: id, Ppid: p.GetPid(),
			Pgid: id, Sid: e.GetSid(), Threads: []uint32{id},
		}
		byPid[id] = h
		t.dead = append(t.dead, dead{pid: int(id), state: taskHelper, comm: "cryo-helper"})
		t.order = append(t.order, h)
	}
	for _, e := range slices.Clone(t.order[1:]) {
		p := byPid[e.GetPpid()]
		if sid := e.GetSid(); sid != e.GetPid() && sid != p.GetSid() {
			switch h := byPid[sid]; {
			case h == nil && alive(int(sid)):
				return fmt.Errorf("%w: pid %d is in session %d, whose leader is outside the tree, and its parent %d in session %d", ErrUnsupported, e.GetPid(), sid, p.GetPid(), p.GetSid())
			case h == nil:
				helper(e, p, sid, "session")
			case !sessions[sid]:
				return fmt.Errorf("%w: pid %d is in session %d, whose leader is in the tree, and its parent %d in session %d", ErrUnsupported, e.GetPid(), sid, p.GetPid(), p.GetSid())
			case h.GetPpid() != p.GetPid():
				return fmt.Errorf("%w: pid %d is in session %d, whose leader has exited, and its parent %d in another, not the parent (%d) of the others in it", ErrUnsupported, e.GetPid(), sid, p.GetPid(), h.GetPpid())
			}
		}
		if e.GetPgid() == e.GetPid() || e.GetPgid() == p.GetPgid() || leaders[e.GetPgid()] {
			continue
		}
		if e.GetPgid() == root.GetPgid() && e.GetSid() == root.GetSid() {
			continue // the root's, which its restore makes
		}
		helper(e, p, e.GetPgid(), "process group")
	}
	return nil
}

// shareMemory finds the shared anonymous memory objects that several
// processes of the tree map (inherited across fork): each is copied once,
// whole, through one of its mappings (copyShared), not by each process.
// A memfd is one object whoever holds it: its contents are copied once
// (copyObjects).
func (t *tree) shareMemory() error {
	if len(t.procs) < 2 {
		return nil
	}
	mappers := map[uint64][]*dumper{}
	var order []uint64
	for _, d := range t.procs {
		for _, v := range d.objectVMAs {
			id := v.GetShmid()
			if v.GetStatus()&image.VMAAnonShared == 0 || v.GetStatus()&image.VMAAreaSysvIPC != 0 {
				continue
			}
			ds := mappers[id]
			if len(ds) == 0 {
				order = append(order, id)
			}
			if len(ds) == 0 || ds[len(ds)-1] != d {
				mappers[id] = append(ds, d)
			}
		}
	}
	for _, id := range order {
		ds := mappers[id]
		if len(ds) < 2 {
			continue
		}
		for _, d := range ds {
			d.shared = slices.DeleteFunc(d.shared, func(s shmemRuns) bool { return s.shmid == id })
		}
		for _, v := range ds[0].objectVMAs {
			if v.GetShmid() == id && v.GetStatus()&(image.VMAAnonShared|image.VMAAreaSysvIPC) == image.VMAAnonShared {
				t.sharedObjects = append(t.sharedObjects, sharedObject{shmid: id,
					path: proc.Path(ds[0].view, fmt.Sprintf("map_files/%x-%x", v.GetStart(), v.GetEnd()))})
				break
			}
		}
	}
	return nil
}

// refuseMappedShmemFd refuses shared anonymous memory that is both held
// by a descriptor (kept as a memfd) and mapped (kept as shared anonymous
// memory): a restore would make two objects of it.
func (t *tree) refuseMappedShmemFd() error {
	held := map[uint64]bool{}
	for _, m := range t.files.MemfdCopies() {
		held[m.Shmid] = true
	}
	for _, d := range t.procs {
		for _, v := range d.objectVMAs {
			if v.GetStatus()&(image.VMAAnonShared|image.VMAAreaSysvIPC) == image.VMAAnonShared && held[v.GetShmid()] {
				return t.named(d.pid, fmt.Errorf("%w: shared anonymous memory at %#x is held by a descriptor too", ErrUnsupported, v.GetStart()))
			}
		}
	}
	return nil
}

// sharedObject is a shared anonymous memory object that several
// processes of the tree map.
type sharedObject struct {
	shmid uint64
	// path is one of its mappings in /proc/PID/map_files, through which
	// it is read.
	path string
}

// copyShared copies each shared anonymous memory object that several
// processes map, whole: its pages at their offsets in the object.
func (t *tree) copyShared(buf []byte) error {
	for _, o := range t.sharedObjects {
		f, err := os.Open(o.path)
		if err != nil {
			return fmt.Errorf("shared memory %d: %w", o.shmid, err)
		}
		err = func() error {
			st, err := f.Stat()
			if err != nil {
				return err
			}
			w, err := t.dir.CreateShmemPages(o.shmid, t.nextPagesID())
			if err != nil {
				return err
			}
			n, err := files.CopyPages(f, st.Size(), w, buf)
			t.stats.Pages += n
			return errors.Join(err, w.Close())
		}()
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("shared memory %d: %w", o.shmid, err)
		}
	}
	return nil
}

// memoryToCopy is how many bytes the pages step copies.
func (t *tree) memoryToCopy() uint64 {
	var n uint64
	for _, d := range t.procs {
		for _, r := range d.runs {
			n += r.n
		}
		for _, sh := range d.shared {
			for _, r := range sh.runs {
				n += r.n
			}
		}
	}
	return n
}

// copyObjects copies the shared anonymous objects that several processes
// map, and each memfd's contents, read through its descriptor: pages no
// mapping holds belong to the object too.
func (t *tree) copyObjects() error {
	memfds := t.files.MemfdCopies()
	if len(t.sharedObjects) == 0 && len(t.sysvShm) == 0 && len(memfds) == 0 {
		// Nor a buffer, which the tree would wait for frozen: fresh
		// memory costs a page fault a page.
		return nil
	}
	buf := make([]byte, copyChunk)
	if err := t.copyShared(buf); err != nil {
		return err
	}
	if err := t.copySysvShm(buf); err != nil {
		return err
	}
	for _, m := range memfds {
		w, err := t.dir.CreateShmemPages(m.Shmid, t.nextPagesID())
		if err != nil {
			return err
		}
		n, err := m.Copy(w, buf)
		t.stats.Pages += n
		if err := errors.Join(err, w.Close()); err != nil {
			return fmt.Errorf("memfd %s: %w", m.Name, err)
		}
	}
	return nil
}

// writeImages writes what belongs to the tree as a whole: the inventory,
// the process tree, the zombies' cores, the open files, the CPU, the
// clocks and the seccomp filters.
func (t *tree) writeImages() error {
	rootIDs := t.procs[0].images.ids
	inv := &pb.InventoryEntry{
		ImgVersion:  image.ImgVersion,
		FdinfoPerId: pb.Bool(true),
		RootIds:     rootIDs,
		NsPerId:     pb.Bool(true),
		Lsmtype:     pb.Lsmtype_NO_LSM.Enum(),
		RootCgSet:   pb.Uint32(rootCgSet),
	}
	for _, d := range t.procs {
		d.entry.Threads = d.images.threads
	}
	for _, z := range t.dead {
		core := &pb.CoreEntry{
			Mtype: pb.CoreEntry_X86_64,
			Tc: &pb.TaskCoreEntry{
				TaskState: z.state, ExitCode: uint32(z.status),
				Personality: 0, Flags: z.flags, BlkSigset: 0,
				Comm: z.comm,
			},
		}
		if err := t.dir.WriteImage(image.Core, uint32(z.pid), core); err != nil {
			return err
		}
	}
	if err := t.dir.WriteImage(image.Inventory, 0, inv); err != nil {
		return err
	}
	if err := image.WriteAll(t.dir, image.Pstree, 0, t.order); err != nil {
		return err
	}
	if err := t.dir.WriteImage(image.Cpuinfo, 0, t.host.Image()); err != nil {
		return err
	}
	if err := t.dir.WriteImage(image.Timens, timensID, t.timens); err != nil {
		return err
	}
	if t.ownUTS {
		uts := t.procs[0].asked.uts
		names := &pb.UtsnsEntry{Nodename: unix.ByteSliceToString(uts.Nodename[:]), Domainname: unix.ByteSliceToString(uts.Domainname[:])}
		if err := t.dir.WriteImage(image.UTSNS, rootIDs.GetUtsNsId(), names); err != nil {
			return err
		}
	}
	if err := t.writeSysvShm(rootIDs.GetIpcNsId()); err != nil {
		return err
	}
	if err := t.writeSysvIPC(rootIDs.GetIpcNsId()); err != nil {
		return err
	}
	if len(t.seccomp.SeccompFilters) > 0 {
		if err := t.dir.WriteImage(image.Seccomp, 0, &t.seccomp); err != nil {
			return err
		}
	}
	if err := t.dir.WriteThreadExtras(t.threadExtras); err != nil {
		return err
	}
	if err := t.writeCgroups(); err != nil {
		return err
	}
	return t.files.WriteImages(t.dir)
}

// detach lets every seized process go on as it was.
func (t *tree) detach() error {
	var errs []error
	for _, d := range slices.Backward(t.procs) {
		if d.tr != nil {
			errs = append(errs, t.named(d.pid, d.tr.Detach()))
			d.tr = nil
		}
	}
	return errors.Join(errs...)
}

// kill ends every process of the tree, children first.
func (t *tree) kill() error {
	var errs []error
	for _, d := range slices.Backward(t.procs) {
		if err := d.tr.Kill(); err != nil {
			errs = append(errs, t.named(d.pid, err))
		}
	}
	return errors.Join(errs...)
}

// removeImages deletes what a failed dump wrote.
func (t *tree) removeImages() {
	if t.dir != nil {
		if err := t.dir.Discard(); err != nil {
			t.log.Warn("remove the images of the failed dump", "err", err)
		}
	}
}

// refuseParentDeathSignals refuses a child with a parent-death signal
// (PR_SET_PDEATHSIG) in a process whose leader has exited: the restore
// makes children from the leader, whose exit again would send it.
func (t *tree) refuseParentDeathSignals() error {
	exited := map[int]bool{}
	for _, d := range t.procs {
		exited[d.pid] = d.leaderExited()
	}
	for _, d := range t.procs {
		if !exited[d.ppid] {
			continue
		}
		for i, c := range d.threads {
			if sig := c.GetThreadCore().GetPdeathSig(); sig != 0 {
				return t.named(d.pid, fmt.Errorf("%w: thread %d has a parent-death signal (%s) and its parent pid %d's leader has exited: the restored leader's exit would send it", ErrUnsupported, d.tids()[i], unix.SignalName(unix.Signal(sig)), d.ppid))
			}
		}
	}
	return nil
}

// alive reports whether a task has pid: its /proc entry is there.
func alive(pid int) bool {
	_, err := proc.ReadStat(pid)
	return err == nil
}
