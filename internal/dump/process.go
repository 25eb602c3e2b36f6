package dump

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// timensID is the id of the one time namespace of a dump.
const timensID = files.TimeNsID

// dumpMemory lists the VMAs into the mm image, the page runs to copy and
// the ranges threads must be stepped out of.
func (d *dumper) dumpMemory(mem *os.File) error {
	pm, err := proc.Open(proc.Path(d.view, "pagemap"), unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer pm.Close()
	if d.images.mm, err = d.dir.CreateRecord(image.MM, uint32(d.pid)); err != nil {
		return err
	}
	var c classifier
	err = d.listMemory(mem, pm, &c)
	if errors.Is(err, errProxied) {
		d.log.Info("process runs on a vDSO proxy: dumping its original vDSO", "vdso", fmt.Sprintf("%#x", c.mark.VDSO), "vvar", fmt.Sprintf("%#x", c.mark.VVar))
		if err = d.images.mm.Restart(); err == nil {
			err = d.listMemory(mem, pm, &c)
		}
	}
	// The image is finished once the task is read (images.write).
	return errors.Join(err, d.images.mm.Pause())
}

// errProxied stops a listing of the memory of a process found to run on a
// vDSO proxy, which starts again knowing it.
var errProxied = errors.New("process runs on a vDSO proxy")

// areaBatch is how many areas have their pages found at a time.
const areaBatch = 512

// listMemory reads the process's smaps an entry at a time: each VMA goes
// to the mm image, written as it comes, the files they map to the files
// table, and the pages of each batch of areas are found in pagemap pm.
// What it holds of the VMAs is the objectVMAs. The entries
// before [vdso] depend on whether it carries a proxy's mark: once it is
// found to, with c.mark unset, the listing stops with errProxied and
// c.mark set, to be started again.
func (d *dumper) listMemory(mem, pm *os.File, c *classifier) error {
	c.vvar = nil
	d.vdsos, d.sysvKeys = nil, map[uint64]uint32{}
	d.objectVMAs, d.deferred = nil, nil
	d.aioRings, d.images.mmHead.Aios = nil, nil
	d.mapsIOUring = false
	var (
		runs   runLister
		batch  []area
		last   *pb.VmaEntry // the next entry may extend it (a vvar)
		lo, hi = ^uint64(0), uint64(0)
		vmas   int
		// named counts the anonymous VMAs with a name, the first named.
		named int
		first string
	)
	add := func(e *pb.VmaEntry) error {
		vmas++
		lo, hi = min(lo, e.Start), max(hi, e.End)
		if e.Status&image.VMAAnonPrivate == 0 {
			d.objectVMAs = append(d.objectVMAs, e)
		}
		return d.images.mm.Add(pb.MmVmasField, e)
	}
	// The private memory a snapshot child will hold has its pages found
	// in the child's pagemap, once the process runs on.
	flush := func() error {
		now := batch
		if d.snapshotting() {
			var forked []area
			now, forked = splitForked(batch)
			d.deferred = append(d.deferred, forked...)
		}
		batch = batch[:0]
		return runs.add(pm, now)
	}
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
		e, a, f, err := c.next(s)
		if err != nil || e == nil {
			return err
		}
		if strings.HasPrefix(s.Path, "[anon:") {
			if named++; first == "" {
				first = s.Path
			}
		}
		if err := d.recordMapped(e, f); err != nil {
			return err
		}
		if e.Status == image.VMAAreaIOUring {
			e.Shmid = uint64(d.files.IOUringMapping(d.pid, e.Shmid, e.Start, e.End, e.Pgoff))
			d.mapsIOUring = true
		}
		if e.Status == image.VMAAreaAIORing {
			if err := d.recordAioRing(mem, e.Start, e.End); err != nil {
				return err
			}
		}
		if last != nil {
			if err := add(last); err != nil {
				return err
			}
		}
		last = e
		if a.dump == nil && !a.all {
			return nil
		}
		if batch = append(batch, a); len(batch) == areaBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if last != nil {
		if err := add(last); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	d.stats.VMAs += vmas
	if named > 0 {
		// Go since 1.25 names its memory where the kernel allows it
		// (CONFIG_ANON_VMA_NAME): refusing it would refuse every Go
		// program there, and the names change nothing but /proc.
		d.log.Warn("the names of anonymous memory (PR_SET_VMA_ANON_NAME) are not kept: the restored VMAs have none", "pid", d.pid, "vmas", named, "first", first)
	}
	guards, err := guardRegions(pm, lo, hi)
	if err != nil {
		return err
	}
	for _, g := range guards {
		if err := d.images.mm.Add(pb.MmVmasField, g); err != nil {
			return err
		}
	}
	d.runs, d.shared = runs.runs, runs.objects()
	return nil
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
	m := &d.images.mmHead
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
		if err := d.files.Dump(d.pid, uint32(d.pid), d.objectVMAs); err != nil {
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
