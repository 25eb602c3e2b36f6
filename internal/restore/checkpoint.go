package restore

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// checkpoint is an image directory read and checked: everything but the
// page contents, which are read while they are written into the process.
type checkpoint struct {
	dir   *image.Dir
	pid   int
	task  *pb.PstreeEntry
	cores map[uint32]*pb.CoreEntry // by TID, without their FPU state
	// fpUsed is what of the threads' FPU states is in use
	// (cpu.FpregsInUse), for checkCPU. The states are read again from the
	// cores when finalRegs sets them (fpregs): those of 1,000 threads took
	// 3.4 MB decoded (with AVX-512), 0.9 MB encoded, the most of what a
	// restore of them held.
	fpUsed uint64
	mm     *pb.MmEntry // its VMAs are in vmas
	vmas   vmaList     // in address order (checkVMAs), without the guard regions
	fs     *pb.FsEntry
	files  *files.Set
	timens *pb.TimensEntry
	// toWrite is how many bytes of pages the pages step writes, and
	// vdsoRuns the runs of pages of the vDSO: the pagemap is read again
	// where it is needed, as 30,000 runs held took 1 MB.
	toWrite  uint64
	vdsoRuns []image.PageEntry
	// copyPages is how many of the pages to write are in runs of uffdMin
	// bytes or more, which a userfaultfd would copy.
	copyPages uint64
	vdso      *vma                     // nil if the process had none
	vvar      *vma                     // nil if the process had none
	guards    []vma                    // MADV_GUARD_INSTALL regions, after the VMAs in the image, not in vmas
	threads   []uint32                 // leader first
	seccomp   map[uint32]threadSeccomp // the threads under seccomp

	// filledReadOnly are the starts of the VMAs without write permission
	// that have pages to write (writableProt).
	filledReadOnly map[uint64]bool
}

func imageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrImage, fmt.Sprintf(format, a...))
}

// loadProcess reads and checks the images of one live process of a
// checkpoint, task its pstree.img entry.
func loadProcess(dir *image.Dir, task *pb.PstreeEntry, cores map[uint32]*pb.CoreEntry) (*checkpoint, error) {
	c := &checkpoint{dir: dir, task: task, pid: int(task.GetPid())}
	if c.pid <= 0 || len(c.task.Threads) == 0 || c.task.Threads[0] != uint32(c.pid) {
		return nil, imageErr("pstree.img: pid %d with threads %v: the leader must come first", c.pid, c.task.Threads)
	}
	c.threads = c.task.Threads
	c.cores = map[uint32]*pb.CoreEntry{}
	for _, tid := range c.threads {
		core := cores[tid]
		if core == nil {
			core = &pb.CoreEntry{}
			if err := dir.ReadImage(image.Core, tid, core); err != nil {
				return nil, fmt.Errorf("%w: thread %d: %w", ErrImage, tid, err)
			}
		}
		if core.GetMtype() != pb.CoreEntry_X86_64 || core.ThreadInfo == nil || core.ThreadCore == nil {
			return nil, fmt.Errorf("%w: thread %d: %v core: only x86_64 is supported", ErrUnsupported, tid, core.GetMtype())
		}
		if _, dup := c.cores[tid]; dup {
			return nil, imageErr("thread %d listed twice", tid)
		}
		c.cores[tid] = core
		if fp := core.ThreadInfo.Fpregs; fp != nil {
			c.fpUsed |= cpu.FpregsInUse(fp)
			core.ThreadInfo.Fpregs = nil
		}
	}
	if err := c.loadSeccomp(); err != nil {
		return nil, err
	}
	// The process is born with cryo's security label, which the restore
	// does not change: another than it had could let it do what it could
	// not.
	if want := c.cores[uint32(c.pid)].GetThreadCore().GetCreds().GetLsmProfile(); want != "" {
		own, err := proc.ReadSecurityLabel(0)
		if err != nil {
			return nil, err
		}
		// AppArmor's unconfined is no label where no module is loaded (a
		// Debian kernel's dump restored on this one).
		if own != want && !(want == "unconfined" && own == "") {
			return nil, fmt.Errorf("%w: the process's security label was %q, and a restored one would have cryo's %q", ErrUnsupported, want, own)
		}
	}
	if c.cores[uint32(c.pid)].Tc == nil {
		return nil, imageErr("core-%d.img has no task state", c.pid)
	}
	if st := c.cores[uint32(c.pid)].Tc.GetTaskState(); st != taskAlive && st != taskStopped {
		return nil, fmt.Errorf("%w: task state %d (only running and stopped processes)", ErrUnsupported, st)
	}
	if err := c.readMM(); err != nil {
		return nil, err
	}
	if err := c.checkVMAs(); err != nil {
		return nil, err
	}
	if err := c.checkAios(); err != nil {
		return nil, err
	}
	if err := c.loadPages(); err != nil {
		return nil, err
	}
	if err := c.loadFiles(); err != nil {
		return nil, err
	}
	if err := c.checkIOUringVMAs(); err != nil {
		return nil, err
	}
	// The clocks of the time namespace the ids name; a checkpoint whose
	// ids name none has none.
	if id := c.cores[uint32(c.pid)].GetIds().GetTimeNsId(); id != 0 {
		c.timens = &pb.TimensEntry{}
		if err := dir.ReadImage(image.Timens, id, c.timens); err != nil {
			return nil, fmt.Errorf("%w: clocks of time namespace %d: %w", ErrImage, id, err)
		}
	}
	return c, nil
}

// fpregs reads the FPU state of thread tid again from its core, nil if it
// has none.
func (c *checkpoint) fpregs(tid int) (*pb.UserX86FpregsEntry, error) {
	core := &pb.CoreEntry{}
	if err := c.dir.ReadImage(image.Core, uint32(tid), core); err != nil {
		return nil, fmt.Errorf("%w: thread %d: %w", ErrImage, tid, err)
	}
	return core.GetThreadInfo().GetFpregs(), nil
}

// checkVMAs checks the VMAs are page-aligned, ordered and disjoint, and
// finds the vDSO pair.
func (c *checkpoint) checkVMAs() error {
	var prevEnd uint64
	minAddr := mmapMinAddr()
	i := -1
	for v := range c.vmas.all() {
		i++
		start, end := v.start, v.end
		switch {
		case start < minAddr:
			// Only a process with CAP_SYS_RAWIO maps there, and cryo
			// would hand it one.
			return imageErr("mm-%d.img: VMA %d at %#x-%#x is below vm.mmap_min_addr (%#x)", c.pid, i, start, end, minAddr)
		case start%pageSize != 0 || end%pageSize != 0 || end <= start:
			return imageErr("mm-%d.img: VMA %d at %#x-%#x is not a page-aligned range", c.pid, i, start, end)
		case start < prevEnd:
			return imageErr("mm-%d.img: VMA %d at %#x-%#x overlaps the one before, which ends at %#x", c.pid, i, start, end, prevEnd)
		}
		prevEnd = end
		st := v.status
		switch {
		case st&image.VMAAreaVDSO != 0:
			if c.vdso != nil {
				return imageErr("mm-%d.img: two vDSO VMAs", c.pid)
			}
			vdso := *v
			c.vdso = &vdso
		case st&image.VMAAreaVVAR != 0:
			if c.vvar != nil {
				return imageErr("mm-%d.img: two vvar VMAs", c.pid)
			}
			vvar := *v
			c.vvar = &vvar
		}
	}
	return c.checkGuards()
}

// checkGuards checks the guard regions are page-aligned, ordered,
// disjoint, and inside VMAs the process maps itself.
func (c *checkpoint) checkGuards() error {
	var prevEnd uint64
	vmas := c.vmas.reader()
	for _, g := range c.guards {
		start, end := g.start, g.end
		switch {
		case start%pageSize != 0 || end%pageSize != 0 || end <= start:
			return imageErr("mm-%d.img: guard region %#x-%#x is not a page-aligned range", c.pid, start, end)
		case start < prevEnd:
			return imageErr("mm-%d.img: guard region %#x-%#x overlaps the one before, which ends at %#x", c.pid, start, end, prevEnd)
		}
		prevEnd = end
		for addr := start; addr < end; {
			v := vmas.at(addr)
			if v == nil || v.status&(image.VMAAreaVDSO|image.VMAAreaVVAR) != 0 {
				return imageErr("mm-%d.img: guard region %#x-%#x is not inside the process's VMAs", c.pid, start, end)
			}
			addr = v.end
		}
	}
	return nil
}

// loadPages reads the pagemap and checks every run lies in a VMA that
// takes page contents; it counts the bytes the pages step writes, and
// keeps the runs of the vDSO's pages.
func (c *checkpoint) loadPages() error {
	pr, err := c.dir.OpenPages(uint32(c.pid))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	vmas := c.vmas.reader() // the runs ascend too
	return eachRun(pr, func(e image.PageEntry) error {
		// A run may span adjacent VMAs.
		end := e.Vaddr + e.NrPages*pageSize
		for addr := e.Vaddr; addr < end; {
			v := vmas.at(addr)
			if v == nil {
				return imageErr("pagemap-%d.img: pages at %#x-%#x are outside every VMA", c.pid, addr, end)
			}
			if v.status&(image.VMAAreaVVAR|image.VMAFileShared) != 0 {
				return imageErr("pagemap-%d.img: pages at %#x in a VMA whose contents are not dumped", c.pid, addr)
			}
			if v.prot&unix.PROT_WRITE == 0 {
				if c.filledReadOnly == nil {
					c.filledReadOnly = map[uint64]bool{}
				}
				c.filledReadOnly[v.start] = true
			}
			addr = v.end
		}
		in, out := split(vdso.Range{Start: e.Vaddr, End: end}, []vdso.Range{c.vdsoPages()})
		for _, p := range out {
			c.toWrite += p.End - p.Start
			if p.End-p.Start >= uffdMin {
				c.copyPages += (p.End - p.Start) / pageSize
			}
		}
		if len(in) > 0 {
			c.vdsoRuns = append(c.vdsoRuns, e)
		}
		return nil
	})
}

// vdsoPages is the range of the vDSO's pages, which the vDSO step
// placed; a run may hold them too, and the pages step leaves them out.
func (c *checkpoint) vdsoPages() vdso.Range {
	if c.vdso == nil {
		return vdso.Range{}
	}
	return vdso.Range{Start: c.vdso.start, End: c.vdso.end}
}

// eachRun calls f on every run of a pagemap, in order. Runs whose pages
// are not in this image (a parent's, or served lazily) are refused.
func eachRun(pr *image.PageReader, f func(image.PageEntry) error) error {
	for {
		e, err := pr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		if e.Flags&image.PEPresent == 0 {
			return fmt.Errorf("%w: pages at %#x are not in this image (incremental or lazy dumps)", ErrUnsupported, e.Vaddr)
		}
		if err := f(e); err != nil {
			return err
		}
	}
}

// loadFiles reads the open files and checks that the executable, cwd,
// root and every file mapping refer to entries of the right kind.
func (c *checkpoint) loadFiles() (err error) {
	if c.files, err = files.Load(c.dir, c.pid, c.cores[uint32(c.pid)].GetIds().GetFilesId()); err != nil {
		return err
	}
	c.fs = &pb.FsEntry{}
	if err := c.dir.ReadImage(image.FS, uint32(c.pid), c.fs); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, id := range []uint32{c.fs.GetCwdId(), c.fs.GetRootId(), c.mm.GetExeFileId()} {
		if _, err := c.files.Reg(id); err != nil {
			return fmt.Errorf("cwd, root or executable: %w", err)
		}
	}
	for v := range c.vmas.all() {
		if v.status&(image.VMAFilePrivate|image.VMAFileShared) == 0 {
			continue
		}
		f := c.files.File(uint32(v.shmid))
		if v.status&image.VMAAreaMemfd != 0 {
			if f == nil || f.GetType() != pb.FdTypes_MEMFD {
				return imageErr("memfd mapping at %#x refers to file %d, which is not a memfd entry", v.start, v.shmid)
			}
			if err := c.files.Check(f); err != nil {
				return err
			}
			continue
		}
		if f == nil || f.GetReg() == nil {
			return imageErr("mapping at %#x refers to file %d, which files.img lacks", v.start, v.shmid)
		}
		// A FIFO's entry, say, would block the open that maps it.
		if m := f.GetReg().Mode; m != nil && *m&unix.S_IFMT != unix.S_IFREG {
			return imageErr("mapping at %#x refers to file %d, %s, of mode %#o, not a regular file", v.start, v.shmid, f.GetReg().GetName(), *m)
		}
	}
	return c.files.CheckMappingLocks(func(id uint32) bool {
		for v := range c.vmas.all() {
			st := v.status
			if st&(image.VMAFilePrivate|image.VMAFileShared) != 0 && st&image.VMAAreaMemfd == 0 && v.shmid == uint64(id) {
				return true
			}
		}
		return false
	})
}
