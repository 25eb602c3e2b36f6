package dump

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// timensID is the id of the one time namespace of a dump.
const timensID = files.TimeNsID

// dumpMemory lists the VMAs and the page runs to copy, and the ranges
// threads must be stepped out of.
func (d *dumper) dumpMemory(mem *os.File) ([]run, []shmemRuns, error) {
	var c classifier
	areas, err := d.listAreas(mem, &c)
	if errors.Is(err, errProxied) {
		d.log.Info("process runs on a vDSO proxy: dumping its original vDSO", "vdso", fmt.Sprintf("%#x", c.mark.VDSO), "vvar", fmt.Sprintf("%#x", c.mark.VVar))
		areas, err = d.listAreas(mem, &c)
	}
	if err != nil {
		return nil, nil, err
	}
	pm, err := proc.Open(proc.Path(d.view, "pagemap"), unix.O_RDONLY)
	if err != nil {
		return nil, nil, err
	}
	defer pm.Close()
	// The private memory a snapshot child will hold has its pages found
	// in the child's pagemap, once the process runs on.
	now := areas
	if d.snapshotting() {
		now, d.deferred = splitForked(areas)
	}
	runs, shared, err := pageRuns(pm, now)
	if err != nil {
		return nil, nil, err
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, a := range areas {
		lo, hi = min(lo, a.e.Start), max(hi, a.e.End)
	}
	guards, err := guardRegions(pm, lo, hi)
	if err != nil {
		return nil, nil, err
	}
	d.images.mm.Vmas = slices.Grow(d.images.mm.Vmas, len(areas)+len(guards))
	for _, a := range areas {
		d.images.mm.Vmas = append(d.images.mm.Vmas, a.e)
	}
	d.images.mm.Vmas = append(d.images.mm.Vmas, guards...)
	d.stats.VMAs += len(areas)
	return runs, shared, nil
}

// errProxied stops a listing of the areas of a process found to run on a
// vDSO proxy, which starts again knowing it.
var errProxied = errors.New("process runs on a vDSO proxy")

// listAreas reads the process's smaps into the areas to dump, an entry at
// a time, and records the files they map. The entries before [vdso]
// depend on whether it carries a proxy's mark: once it is found to, with
// c.mark unset, the listing stops with errProxied, c.mark set, to be
// started again.
func (d *dumper) listAreas(mem *os.File, c *classifier) ([]area, error) {
	var areas []area
	c.vvar, d.vdsos, d.sysvKeys = nil, nil, map[uint64]uint32{}
	err := proc.ScanSmaps(d.view, func(s *proc.SmapsEntry) error {
		if s.Path == "[vdso]" && c.mark == nil {
			mark, err := readMark(mem, s.Start)
			if err != nil {
				return err
			}
			if mark != nil {
				c.mark, c.pairEnd = mark, mark.RuntimeVVar
				if s.Start >= mark.RuntimeVVar {
					c.pairEnd = s.End
				}
				return errProxied
			}
		}
		if s.Path == "[vdso]" || (c.mark != nil && s.Start == c.mark.VDSO) {
			d.vdsos = append(d.vdsos, s.Mapping)
		}
		if key, ok := sysvKey(s.Mapping); ok {
			d.sysvKeys[s.Inode] = key
		}
		a, f, ok, err := c.next(s)
		if err != nil || !ok {
			return err
		}
		if err := d.recordMapped(a.e, f); err != nil {
			return err
		}
		areas = append(areas, a)
		return nil
	})
	return areas, err
}

// recordMapped records the file a VMA maps in the files table, which the
// VMA's shmid names.
func (d *dumper) recordMapped(e *pb.VmaEntry, f mappedFile) error {
	if f.memfd == "" && f.path == "" {
		return nil
	}
	link := proc.Path(d.view, fmt.Sprintf("map_files/%x-%x", e.Start, e.End))
	if f.memfd != "" {
		id, err := d.files.MemfdMapping(link, f.memfd, f.flags)
		if err != nil {
			return fmt.Errorf("memfd mapping at %#x: %w", e.Start, err)
		}
		e.Shmid = uint64(id)
		return nil
	}
	id, err := d.files.RegFile(f.path, link, f.flags)
	if err != nil {
		return fmt.Errorf("mapping at %#x: %w", e.Start, err)
	}
	e.Shmid = uint64(id)
	return nil
}

// dumpProcess collects what belongs to the process rather than a thread.
func (d *dumper) dumpProcess() error {
	p := d.asked
	tc, err := d.dumpTask(p)
	if err != nil {
		return err
	}
	if err := d.dumpProcState(tc, p.membarrier); err != nil {
		return err
	}
	if err := d.dumpCgroups(tc); err != nil {
		return err
	}
	cr := d.dumpCreds(p.secbits)
	// The leader's core carries the process-wide state; every thread
	// carries the credentials, as CRIU keeps them per thread.
	for i, c := range d.threads {
		c.ThreadCore.Creds = cr
		if i == 0 {
			c.Tc = tc
			c.Ids = d.ids()
		}
	}
	if err := d.recordProcessExtra(p.mdwe); err != nil {
		return err
	}
	auxv, err := proc.ReadAuxv(d.view)
	if err != nil {
		return err
	}
	var saved []uint64
	for _, a := range auxv {
		saved = append(saved, a.Type, a.Value)
	}
	saved = append(saved, 0, 0)
	exe, err := proc.ReadExe(d.view)
	if err != nil {
		return err
	}
	// A deleted executable shares the ghost of its mappings.
	exeID, err := d.files.RegFile(exe, proc.Path(d.view, "exe"), unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("executable: %w", err)
	}
	st := d.stat
	m := &d.images.mm
	m.MmStartCode, m.MmEndCode = st.StartCode, st.EndCode
	m.MmStartData, m.MmEndData = st.StartData, st.EndData
	m.MmStartStack, m.MmStartBrk, m.MmBrk = st.StartStack, st.StartBrk, p.brk
	m.MmArgStart, m.MmArgEnd = st.ArgStart, st.ArgEnd
	m.MmEnvStart, m.MmEnvEnd = st.EnvStart, st.EnvEnd
	m.ExeFileId = exeID
	m.MmSavedAuxv = saved
	m.Dumpable = pb.Int32(int32(p.dumpable))
	m.ThpDisabled = pb.Bool(p.thp != 0)

	for _, tid := range d.tids() {
		d.images.threads = append(d.images.threads, uint32(tid))
	}
	d.images.ids = d.ids()
	if d == d.procs[0] {
		// The clocks are the namespace's, which every process shares.
		if d.timens, err = dumpClocks(d.view); err != nil {
			return err
		}
		d.files.ClocksRead(time.Now())
	}
	return nil
}

// ids are the kernel object ids of the process: its address space and
// signal handlers are its own, numbered by its pid; its descriptor table
// and filesystem context its own or its parent's (checkAlone); its
// namespaces are the tree's.
func (d *dumper) ids() *pb.TaskKobjIdsEntry {
	ids := &pb.TaskKobjIdsEntry{VmId: uint32(d.pid), FilesId: uint32(d.filesID), FsId: uint32(d.fsID), SighandId: uint32(d.pid)}
	files.SetNsIDs(ids)
	return ids
}

// dumpFiles records the descriptors, cwd and root.
func (d *dumper) dumpFiles() error {
	// A table shared with the parent is the parent's, dumped once.
	if d.filesID == d.pid {
		if err := d.files.Dump(d.pid, uint32(d.pid), d.images.mm.Vmas); err != nil {
			return err
		}
	}
	cwd, err := proc.ReadCwd(d.view)
	if err != nil {
		return err
	}
	root, err := proc.ReadRoot(d.view)
	if err != nil {
		return err
	}
	if root != "/" {
		// A restore could not make it again: refused now, not then.
		return fmt.Errorf("%w: the root directory is %s (chroot)", ErrUnsupported, root)
	}
	if d.status.Umask < 0 {
		return fmt.Errorf("no umask in status")
	}
	cwdID, err := d.files.RegFile(cwd, proc.Path(d.view, "cwd"), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	rootID, err := d.files.RegPath(root, proc.Path(d.view, "root"), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("root directory: %w", err)
	}
	d.images.fs = &pb.FsEntry{
		CwdId:  cwdID,
		RootId: rootID,
		Umask:  pb.Uint32(uint32(d.status.Umask)),
	}
	return nil
}
