package restore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	pipedata "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"github.com/cryo-cr/cryo/internal/image"
)

// checkpoint is an image directory read and checked: everything but the
// page contents, which are read while they are written into the process.
type checkpoint struct {
	dir     *image.Dir
	pid     int
	task    *pstree.PstreeEntry
	cores   map[uint32]*criucore.CoreEntry // by TID
	mm      *mm.MmEntry
	fs      *fsimg.FsEntry
	files   map[uint32]*fdinfo.FileEntry
	fds     []*fdinfo.FdinfoEntry
	pipes   map[uint32][]byte // buffered data by pipe id
	fifos   map[uint32][]byte
	ghosts  map[uint32]ghost                  // by the id of the file entry they stand for
	memfds  map[uint32]*memfd.MemfdInodeEntry // by inode id
	timens  *timens.TimensEntry
	pages   []image.PageEntry
	vdso    *vma.VmaEntry // nil if the process had none
	vvar    *vma.VmaEntry
	threads []uint32 // leader first
}

// ghost is an unlinked file's saved contents.
type ghost struct {
	e    *ghostfile.GhostFileEntry
	data []byte
}

func imageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrImage, fmt.Sprintf(format, a...))
}

// load reads and checks a checkpoint directory.
func load(path string) (*checkpoint, error) {
	dir, err := image.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	c := &checkpoint{dir: dir}
	var inv inventory.InventoryEntry
	if err := dir.ReadImage(image.Inventory, 0, &inv); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	if inv.GetImgVersion() != image.ImgVersion {
		return nil, imageErr("image version %d, want %d", inv.GetImgVersion(), image.ImgVersion)
	}
	tree, err := image.ReadAll[pstree.PstreeEntry](dir, image.Pstree, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	switch {
	case len(tree) == 0:
		return nil, imageErr("pstree.img holds no process")
	case len(tree) > 1:
		return nil, fmt.Errorf("%w: %d processes: process trees", ErrUnsupported, len(tree))
	}
	c.task = tree[0]
	c.pid = int(c.task.GetPid())
	if c.pid <= 0 || len(c.task.Threads) == 0 || c.task.Threads[0] != uint32(c.pid) {
		return nil, imageErr("pstree.img: pid %d with threads %v: the leader must come first", c.pid, c.task.Threads)
	}
	c.threads = c.task.Threads
	c.cores = map[uint32]*criucore.CoreEntry{}
	for _, tid := range c.threads {
		core := &criucore.CoreEntry{}
		if err := dir.ReadImage(image.Core, tid, core); err != nil {
			return nil, fmt.Errorf("%w: thread %d: %w", ErrImage, tid, err)
		}
		if core.GetMtype() != criucore.CoreEntry_X86_64 || core.ThreadInfo == nil || core.ThreadCore == nil {
			return nil, fmt.Errorf("%w: thread %d: %v core: only x86_64 is supported", ErrUnsupported, tid, core.GetMtype())
		}
		if _, dup := c.cores[tid]; dup {
			return nil, imageErr("thread %d listed twice", tid)
		}
		c.cores[tid] = core
	}
	if c.cores[uint32(c.pid)].Tc == nil {
		return nil, imageErr("core-%d.img has no task state", c.pid)
	}
	if st := c.cores[uint32(c.pid)].Tc.GetTaskState(); st != taskAlive && st != taskStopped {
		return nil, fmt.Errorf("%w: task state %d (only running and stopped processes)", ErrUnsupported, st)
	}
	c.mm = &mm.MmEntry{}
	if err := dir.ReadImage(image.MM, uint32(c.pid), c.mm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	if err := c.checkVMAs(); err != nil {
		return nil, err
	}
	if err := c.loadPages(); err != nil {
		return nil, err
	}
	if err := c.loadFiles(); err != nil {
		return nil, err
	}
	c.timens = &timens.TimensEntry{}
	if err := dir.ReadImage(image.Timens, 1, c.timens); errors.Is(err, fs.ErrNotExist) {
		c.timens = nil
	} else if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	return c, nil
}

// checkVMAs checks the VMAs are page-aligned, ordered and disjoint, and
// finds the vDSO pair.
func (c *checkpoint) checkVMAs() error {
	var prevEnd uint64
	for i, v := range c.mm.Vmas {
		start, end := v.GetStart(), v.GetEnd()
		switch {
		case start%pageSize != 0 || end%pageSize != 0 || end <= start:
			return imageErr("mm-%d.img: VMA %d at %#x-%#x is not a page-aligned range", c.pid, i, start, end)
		case start < prevEnd:
			return imageErr("mm-%d.img: VMA %d at %#x-%#x overlaps the one before, which ends at %#x", c.pid, i, start, end, prevEnd)
		}
		prevEnd = end
		st := v.GetStatus()
		switch {
		case st&image.VMAAreaVDSO != 0:
			if c.vdso != nil {
				return imageErr("mm-%d.img: two vDSO VMAs", c.pid)
			}
			c.vdso = v
		case st&image.VMAAreaVVAR != 0:
			if c.vvar != nil {
				return imageErr("mm-%d.img: two vvar VMAs", c.pid)
			}
			c.vvar = v
		}
	}
	return nil
}

// vmaAt returns the VMA containing addr.
func (c *checkpoint) vmaAt(addr uint64) *vma.VmaEntry {
	i, found := slices.BinarySearchFunc(c.mm.Vmas, addr, func(v *vma.VmaEntry, a uint64) int {
		switch {
		case v.GetEnd() <= a:
			return -1
		case v.GetStart() > a:
			return 1
		}
		return 0
	})
	if !found {
		return nil
	}
	return c.mm.Vmas[i]
}

// loadPages reads the pagemap and checks every run lies in a VMA that
// takes page contents.
func (c *checkpoint) loadPages() error {
	pr, err := c.dir.OpenPages(uint32(c.pid))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	return eachRun(pr, func(e image.PageEntry) error {
		// A run may span adjacent VMAs.
		end := e.Vaddr + e.NrPages*pageSize
		for addr := e.Vaddr; addr < end; {
			v := c.vmaAt(addr)
			if v == nil {
				return imageErr("pagemap-%d.img: pages at %#x-%#x are outside every VMA", c.pid, addr, end)
			}
			if v.GetStatus()&(image.VMAAreaVVAR|image.VMAFileShared) != 0 {
				return imageErr("pagemap-%d.img: pages at %#x in a VMA whose contents are not dumped", c.pid, addr)
			}
			addr = v.GetEnd()
		}
		c.pages = append(c.pages, e)
		return nil
	})
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

// loadFiles reads the open files and what goes with them, and checks that
// every reference resolves.
func (c *checkpoint) loadFiles() error {
	files, err := image.ReadAll[fdinfo.FileEntry](c.dir, image.Files, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	c.files = map[uint32]*fdinfo.FileEntry{}
	for _, f := range files {
		if _, dup := c.files[f.GetId()]; dup {
			return imageErr("files.img: id %d twice", f.GetId())
		}
		c.files[f.GetId()] = f
	}
	if err := c.loadMemfds(); err != nil {
		return err
	}
	ids := c.cores[uint32(c.pid)].GetIds()
	if c.fds, err = image.ReadAll[fdinfo.FdinfoEntry](c.dir, image.Fdinfo, ids.GetFilesId()); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	seen := map[uint32]bool{}
	for _, fd := range c.fds {
		f, ok := c.files[fd.GetId()]
		switch {
		case !ok:
			return imageErr("fd %d refers to file %d, which files.img lacks", fd.GetFd(), fd.GetId())
		case seen[fd.GetFd()]:
			return imageErr("fd %d twice", fd.GetFd())
		case f.GetType() != fd.GetType():
			return imageErr("fd %d: type %v, but file %d is %v", fd.GetFd(), fd.GetType(), f.GetId(), f.GetType())
		}
		seen[fd.GetFd()] = true
		if err := c.checkFile(f); err != nil {
			return fmt.Errorf("fd %d: %w", fd.GetFd(), err)
		}
	}
	c.fs = &fsimg.FsEntry{}
	if err := c.dir.ReadImage(image.FS, uint32(c.pid), c.fs); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, id := range []uint32{c.fs.GetCwdId(), c.fs.GetRootId(), c.mm.GetExeFileId()} {
		if f := c.files[id]; f == nil || f.Reg == nil {
			return imageErr("file %d (cwd, root or executable) is not a regular file entry", id)
		}
	}
	for _, v := range c.mm.Vmas {
		if v.GetStatus()&(image.VMAFilePrivate|image.VMAFileShared) == 0 {
			continue
		}
		f := c.files[uint32(v.GetShmid())]
		if v.GetStatus()&image.VMAAreaMemfd != 0 {
			if f == nil || f.GetType() != fdinfo.FdTypes_MEMFD {
				return imageErr("memfd mapping at %#x refers to file %d, which is not a memfd entry", v.GetStart(), v.GetShmid())
			}
			if err := c.checkMemfd(f); err != nil {
				return err
			}
			continue
		}
		if f == nil || f.Reg == nil {
			return imageErr("mapping at %#x refers to file %d, which files.img lacks", v.GetStart(), v.GetShmid())
		}
	}
	if c.pipes, err = readPipeData(c.dir, image.PipesData); err != nil {
		return err
	}
	if c.fifos, err = readPipeData(c.dir, image.FifoData); err != nil {
		return err
	}
	return c.loadGhosts()
}

func (c *checkpoint) checkFile(f *fdinfo.FileEntry) error {
	switch f.GetType() {
	case fdinfo.FdTypes_REG:
		if f.Reg == nil {
			return imageErr("file %d: REG without a reg entry", f.GetId())
		}
	case fdinfo.FdTypes_PIPE:
		if f.Pipe == nil {
			return imageErr("file %d: PIPE without a pipe entry", f.GetId())
		}
	case fdinfo.FdTypes_FIFO:
		if f.Fifo == nil || c.files[f.Fifo.GetRegfId()] == nil || c.files[f.Fifo.GetRegfId()].Reg == nil {
			return imageErr("file %d: FIFO without its path entry", f.GetId())
		}
	case fdinfo.FdTypes_EVENTFD:
		switch {
		case f.Efd == nil:
			return imageErr("file %d: EVENTFD without an efd entry", f.GetId())
		case f.Efd.GetCounter() > efdMaxCount:
			return imageErr("file %d: eventfd counter %#x is above the largest, %#x", f.GetId(), f.Efd.GetCounter(), uint64(efdMaxCount))
		}
	case fdinfo.FdTypes_MEMFD:
		return c.checkMemfd(f)
	case fdinfo.FdTypes_EVENTPOLL:
		if f.Epfd == nil {
			return imageErr("file %d: EVENTPOLL without an epfd entry", f.GetId())
		}
		return c.checkEventpoll(f)
	default:
		return fmt.Errorf("%w: file %d of type %v", ErrUnsupported, f.GetId(), f.GetType())
	}
	return nil
}

// readPipeData reads pipes-data.img or fifo-data.img: records each
// followed by the pipe's buffered bytes.
func readPipeData(dir *image.Dir, k image.Kind) (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	r, err := dir.Open(k, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer r.Close()
	for {
		var e pipedata.PipeDataEntry
		if err := r.Next(&e); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		data, err := io.ReadAll(r.Payload())
		if err != nil {
			return nil, fmt.Errorf("%w: %s data of pipe %d: %w", ErrImage, k, e.GetPipeId(), err)
		}
		out[e.GetPipeId()] = data
	}
}

func (c *checkpoint) loadGhosts() error {
	remaps, err := image.ReadAll[remap.RemapFilePathEntry](c.dir, image.RemapFpath, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	c.ghosts = map[uint32]ghost{}
	for _, rm := range remaps {
		if rm.GetRemapType() != remap.RemapType_GHOST {
			return fmt.Errorf("%w: file remap of type %v", ErrUnsupported, rm.GetRemapType())
		}
		if f := c.files[rm.GetOrigId()]; f == nil || f.Reg == nil {
			return imageErr("remap-fpath.img: file %d is not a regular file entry", rm.GetOrigId())
		}
		r, err := c.dir.Open(image.GhostFile, rm.GetRemapId())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		var g ghost
		g.e = &ghostfile.GhostFileEntry{}
		err = r.Next(g.e)
		if err == nil {
			g.data, err = io.ReadAll(r.Payload())
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("%w: ghost file %d: %w", ErrImage, rm.GetRemapId(), err)
		}
		c.ghosts[rm.GetOrigId()] = g
	}
	return nil
}
