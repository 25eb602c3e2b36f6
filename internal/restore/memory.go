package restore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

const (
	pageSize = kernel.PageSize
	// madvGuardInstall is MADV_GUARD_INSTALL (Linux >= 6.13).
	madvGuardInstall = 102
	// writeChunk is how much page data one write into the process moves,
	// mapped from the pages file, whose pages then count in cryo's RSS
	// until the write is done, writers windows at once: 512 KiB keeps a
	// restore's peak RSS under 12 MiB (1 MiB windows took a restore of
	// 60,000 VMAs to 12.1-12.5 MiB), and the system calls still a small
	// part of the cost (1 GiB restored as fast as with 1 MiB windows, and
	// those as fast as with 16 MiB).
	writeChunk = 512 << 10
	// populateChunk is how much memory the process faults in ahead of
	// cryo's writes into it, and how much of the pages file is read
	// ahead: without a userfaultfd, 1 GiB was restored in 0.33-0.36 s
	// with 64 MiB, 0.35-0.40 with 32, 0.35-0.38 with 128 and 0.42-0.49
	// with 8; in 0.63-0.65 s faulting it all before writing any.
	populateChunk = 64 << 20
	// populateCalls is how many pieces of more than a page at most the
	// process faults in ahead, so that pieces of a few pages, one a
	// mapping, are faulted while others are written too.
	populateCalls = 512
	// batchCalls is how many of a step's system calls, one per VMA or
	// run of pages, are held and injected at once: a list of all of them
	// took 4.7 MB for 60,000 mappings, and one more stop per 4,096 calls
	// costs nothing to speak of.
	batchCalls = 4096
)

// writers is how many goroutines write pages into a process at once, each
// on a CPU of its own where the machine has them: the kernel faults the
// process's pages in on the writer's. In C here, 30,000 single pages
// were written in 81-93 ms by one writer, 48-53 by two; 1 GiB copied
// through a userfaultfd in 0.34-0.38 s by one, 0.26-0.29 by two.
const writers = 2

// inParallel calls job(0) to job(n-1), writers at a time, each writer
// taking the next one, and returns the first error, after which no
// job starts.
func inParallel(n int, job func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	work := func() error {
		for !failed.Load() {
			i := int(next.Add(1) - 1)
			if i >= n {
				return nil
			}
			if err := job(i); err != nil {
				failed.Store(true)
				return err
			}
		}
		return nil
	}
	helpers := min(writers, n) - 1
	errc := make(chan error, max(helpers, 0))
	for range helpers {
		go func() { errc <- work() }()
	}
	err := work()
	for range helpers {
		err = cmp.Or(err, <-errc)
	}
	return err
}

// callBatch injects the system calls of a step over the VMAs batchCalls
// at a time, as they are added (flush injects the rest).
type callBatch struct {
	r     *restorer
	calls []ptrace.Sys
	of    []vma // the VMA each call is for
	// what names a call that failed; done, if set, looks at each call
	// once its batch ran.
	what func(c *ptrace.Sys, v *vma) string
	done func(c *ptrace.Sys, v *vma) error
}

// add adds call c, for VMA v, injecting the batch once it is full.
func (b *callBatch) add(c ptrace.Sys, v *vma) error {
	b.calls, b.of = append(b.calls, c), append(b.of, *v)
	if len(b.calls) < batchCalls {
		return nil
	}
	return b.flush()
}

// flush injects the calls added since the last batch.
func (b *callBatch) flush() error {
	err := b.r.syscalls(b.r.pid, b.calls, func(i int) string { return b.what(&b.calls[i], &b.of[i]) })
	for i := 0; i < len(b.calls) && err == nil && b.done != nil; i++ {
		err = b.done(&b.calls[i], &b.of[i])
	}
	b.calls, b.of = b.calls[:0], b.of[:0]
	return err
}

// teardown unmaps everything the restored process inherited from its
// parent (the stub, for the root) except the scratch area, the kernel's
// special mappings, which the vDSO step moves, and the memory it keeps
// from its parent (findInherited).
func (r *restorer) teardown() error {
	maps, err := proc.ReadMaps(r.pid)
	if err != nil {
		return err
	}
	r.findInherited()
	keep := slices.SortedFunc(slices.Values(append([]vdso.Range{r.scratchRange()}, r.keep...)),
		func(a, b vdso.Range) int { return cmp.Compare(a.Start, b.Start) })
	for _, m := range maps {
		if _, special := vdsoKinds[m.Path]; special || m.Path == "[vsyscall]" {
			continue
		}
		// What is kept may have merged with a neighbour: unmap around it.
		_, pieces := split(vdso.Range{Start: m.Start, End: m.End}, keep)
		for _, piece := range pieces {
			if err := r.sys(unix.SYS_MUNMAP, piece.Start, piece.End-piece.Start); err != nil {
				return fmt.Errorf("unmap inherited mapping %#x-%#x %s: %w", piece.Start, piece.End, m.Path, err)
			}
		}
	}
	return nil
}

var vdsoKinds = map[string]struct{}{"[vvar]": {}, "[vvar_vclock]": {}, "[vdso]": {}}

// subtract returns the parts of a outside b.
func subtract(a, b vdso.Range) []vdso.Range {
	_, out := split(a, []vdso.Range{b})
	return out
}

// mapVMAs creates every VMA of the image but the vDSO pair, writable
// where pages will be written into it; protect sets the final
// protections once they are.
func (r *restorer) mapVMAs() error {
	fds := map[uint64]uint64{} // file id -> descriptor in the process
	defer func() {
		for _, fd := range fds {
			r.sys(unix.SYS_CLOSE, fd)
		}
	}()
	objects := r.c.shmemObjects()
	// The mappings of their own are made in batches, once the files they
	// map are open.
	maps := callBatch{r: r, what: mapWhat, done: func(c *ptrace.Sys, v *vma) error {
		if err := r.droppableAsPrivate(c); err != nil {
			return fmt.Errorf("%s: %w", mapWhat(c, v), err)
		}
		return nil
	}}
	runs := r.anonRuns()
	for v := range r.c.vmas.all() {
		st := v.status
		if st&(image.VMAAreaVDSO|image.VMAAreaVVAR) != 0 {
			continue
		}
		if r.inherited[v.start] {
			continue
		}
		for len(runs) > 0 && runs[0].end <= v.start {
			runs = runs[1:]
		}
		if len(runs) > 0 && runs[0].start <= v.start {
			if err := r.mapInRun(&maps, runs[0], v); err != nil {
				return err
			}
			continue
		}
		start, length := v.start, v.end-v.start
		if isSysv(v) {
			if err := r.attachSysvShm(v); err != nil {
				return err
			}
			continue
		}
		if st&image.VMAAnonShared != 0 {
			vs := objects[v.shmid]
			switch at := r.shmem[v.shmid]; {
			case at.pid != 0 && at.pid != r.pid:
				if err := r.mapShared(v, at); err != nil {
					return err
				}
				continue
			case !alone(vs) || r.shmemSize[v.shmid] != length:
				if vs[0].start == v.start {
					if err := r.mapObject(vs); err != nil {
						return err
					}
				}
				continue
			}
		}
		// Locking comes once the pages are written (protect).
		flags := uint64(v.flags)&^unix.MAP_LOCKED | unix.MAP_FIXED
		if st&image.VMAAreaAIORing != 0 {
			// Memory for the ring's pages, which the context made
			// again takes the place of (makeAioRings).
			flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED
		}
		prot := uint64(r.writableProt(v))
		if st&image.VMAAreaIOUring != 0 {
			// The address, reserved for the ring's mapping once the
			// ring is made (mapIOUrings).
			flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE | unix.MAP_FIXED
			prot = unix.PROT_NONE
		}
		fd := ^uint64(0) // -1
		if st&image.VMAAreaMemfd != 0 {
			var err error
			if fd, err = r.files.MemfdMapping(uint32(v.shmid)); err != nil {
				return fmt.Errorf("map VMA %#x-%#x: %w", start, start+length, err)
			}
		} else if st&(image.VMAFilePrivate|image.VMAFileShared) != 0 {
			id := v.shmid
			if _, ok := fds[id]; !ok {
				f := r.c.files.File(uint32(id)).GetReg()
				// An unlinked file is recreated or linked back first.
				path, err := r.files.Path(uint32(id))
				if err != nil {
					return fmt.Errorf("map VMA %#x-%#x: %w", start, start+length, err)
				}
				// A shared mapping may be made writable only if its file
				// was open for writing, as the dump records.
				openFlags := uint64(unix.O_RDONLY)
				if st&image.VMAFileShared != 0 && f.GetFlags()&unix.O_ACCMODE == unix.O_RDWR {
					openFlags = unix.O_RDWR
				}
				n, err := r.open(path, openFlags, 0)
				if err != nil {
					return fmt.Errorf("open mapped file %s: %w", f.GetName(), err)
				}
				fds[id] = n
				// A lock that only the mapping held (files/lock.go).
				if err := r.files.TakeMappingLocks(uint32(id), n); err != nil {
					return fmt.Errorf("map VMA %#x-%#x: %w", start, start+length, err)
				}
			}
			fd = fds[id]
		}
		err := maps.add(ptrace.Sys{
			Nr: unix.SYS_MMAP, Args: [6]uint64{start, length, prot, flags, fd, v.pgoff},
			MayFail: flags&unix.MAP_TYPE == image.MapDroppable,
		}, v)
		if err != nil {
			return err
		}
	}
	if err := maps.flush(); err != nil {
		return err
	}
	for id, vs := range objects {
		if r.shmem[id].pid == 0 {
			r.shmem[id] = shmemAt{pid: r.pid, start: vs[0].start, end: vs[0].end}
		}
	}
	return r.files.SealMemfds()
}

// An anonRun is a stretch of adjacent VMAs of plain private anonymous
// memory with the same flags, which one mmap makes, with prot, and an
// mprotect each of those with another protection splits apart: 30,000
// mappings of a page written and a page read-only (60,000 VMAs) took
// 54-96 ms to make with an mmap each, 44-58 with an mmap and 30,000
// mprotects (in C, by hand); the restore's vmas step took 64-67 ms, now
// 56 (medians of 7). A VMA made writable so gets charged to the
// commit limit as one mapped writable is (VM_ACCOUNT): prot is the first
// protection of the run without write permission.
type anonRun struct {
	start, end uint64
	prot       uint32
}

// plainAnon reports whether v may be part of an anonRun.
func (r *restorer) plainAnon(v *vma) bool {
	return v.status == image.VMAAreaRegular|image.VMAAnonPrivate && !r.inherited[v.start] &&
		v.flags&(unix.MAP_TYPE|unix.MAP_HUGETLB) == unix.MAP_PRIVATE
}

// anonRuns returns the anonRuns of two VMAs or more, in order.
func (r *restorer) anonRuns() []anonRun {
	var runs []anonRun
	var cur anonRun
	var n int // VMAs in cur
	var flags uint32
	end := func() {
		if n > 1 {
			runs = append(runs, cur)
		}
		n = 0
	}
	for v := range r.c.vmas.all() {
		plain := r.plainAnon(v)
		if !plain || n > 0 && (v.start != cur.end || v.flags&^unix.MAP_LOCKED != flags) {
			end()
		}
		if !plain {
			continue
		}
		prot := r.writableProt(v)
		if n == 0 {
			cur, flags = anonRun{start: v.start, prot: prot}, v.flags&^unix.MAP_LOCKED
		} else if cur.prot&unix.PROT_WRITE != 0 && prot&unix.PROT_WRITE == 0 {
			cur.prot = prot
		}
		cur.end = v.end
		n++
	}
	end()
	return runs
}

// mapInRun adds to maps the calls that make VMA v of run: the mmap of the
// whole run at its first VMA, then v's own protection.
func (r *restorer) mapInRun(maps *callBatch, run anonRun, v *vma) error {
	if v.start == run.start {
		whole := *v
		whole.end = run.end
		flags := uint64(v.flags)&^unix.MAP_LOCKED | unix.MAP_FIXED
		err := maps.add(ptrace.Sys{Nr: unix.SYS_MMAP, Args: [6]uint64{run.start, run.end - run.start, uint64(run.prot), flags, ^uint64(0), 0}}, &whole)
		if err != nil {
			return err
		}
	}
	if prot := r.writableProt(v); prot != run.prot {
		return maps.add(ptrace.Sys{Nr: unix.SYS_MPROTECT, Args: [6]uint64{v.start, v.end - v.start, uint64(prot)}}, v)
	}
	return nil
}

// mapWhat names the mapping that m, an mmap or the mprotect of a VMA of
// an anonRun, makes of v.
func mapWhat(m *ptrace.Sys, v *vma) string {
	if m.Nr == unix.SYS_MPROTECT {
		return fmt.Sprintf("map VMA %#x-%#x (mprotect to prot %#x)", v.start, v.end, m.Args[2])
	}
	huge := ""
	if v.flags&unix.MAP_HUGETLB != 0 {
		huge = " of huge pages (vm.nr_hugepages keeps them)"
	}
	return fmt.Sprintf("map VMA %#x-%#x%s (prot %#x flags %#x)", v.start, v.end, huge, m.Args[2], m.Args[3])
}

// droppableAsPrivate maps droppable memory as plain private memory where
// the kernel lacks MAP_DROPPABLE (before Linux 6.11), once m, its mmap,
// has failed.
func (r *restorer) droppableAsPrivate(m *ptrace.Sys) error {
	if !errors.Is(m.Failed(), unix.EINVAL) || m.Args[3]&unix.MAP_TYPE != image.MapDroppable {
		return m.Failed()
	}
	r.log.Info("kernel lacks MAP_DROPPABLE: mapping as private", "addr", fmt.Sprintf("%#x", m.Args[0]))
	m.Args[3] = m.Args[3]&^unix.MAP_TYPE | unix.MAP_PRIVATE
	_, err := r.tr.Syscall(r.pid, unix.SYS_MMAP, m.Args[:]...)
	return err
}

// writableProt is the protection a VMA is created with: its own, plus
// write permission while its pages are written (process_vm_writev writes
// only to writable memory). A private mapping without write permission
// and without pages is made as it is: made writable, the kernel would
// charge it to the commit limit, which a large reservation exceeds
// (MariaDB maps 8 TiB inaccessible).
func (r *restorer) writableProt(v *vma) uint32 {
	if v.status&image.VMAFileShared != 0 {
		return v.prot
	}
	private := v.status&(image.VMAAnonPrivate|image.VMAFilePrivate) != 0 && v.flags&unix.MAP_TYPE == unix.MAP_PRIVATE
	if private && v.prot&unix.PROT_WRITE == 0 && !r.c.filledReadOnly[v.start] {
		return v.prot
	}
	if isSysv(v) {
		// As attached (attachSysvShm); cryo writes its contents.
		if v.readOnly {
			return unix.PROT_READ
		}
		return unix.PROT_READ | unix.PROT_WRITE
	}
	return v.prot | unix.PROT_READ | unix.PROT_WRITE
}

// writePages copies the page contents from the image into the process;
// into memory kept from its parent, only the pages that differ
// (writeKept), and the pages kept that the image lacks are dropped.
func (r *restorer) writePages() error {
	pr, err := r.c.dir.OpenPages(uint32(r.c.pid))
	if err != nil {
		return err
	}
	defer pr.Close()
	r.uffd = uffdUnopened
	// Closing a userfaultfd walks every VMA of the process, and each
	// piece it copies splits its VMA and merges it again; copying spares
	// the zeroing of a page. A restore of 60,000 VMAs, with one piece of
	// 61 pages to copy, took 10-17 ms longer with one: it is made where
	// there are more pages to copy than VMAs.
	if r.c.copyPages < uint64(r.c.vmas.n) {
		r.uffd = uffdNone
	}
	defer func() {
		if r.uffd >= 0 {
			unix.Close(r.uffd)
		}
		r.uffd = uffdNone
	}()
	var parent *parentPages
	if len(r.keep) > 0 {
		if parent, err = r.openParentPages(); err != nil {
			return err
		}
		defer parent.pr.Close()
	}
	skip := r.c.vdsoPages()
	progress := func(n uint64) {
		r.written += n
		if r.opts.Progress != nil {
			r.opts.Progress(r.written, r.toWrite)
		}
	}
	// The pages of memory kept from the parent are compared with the
	// parent's (writeKept), but where the parent had none. The others
	// are written batchCalls pieces or so at a time, those of whole runs,
	// which hold the pages file's contents in order.
	var pieces, kept []piece
	var written []vdso.Range // in kept memory
	flush := func() error {
		// In the order of the pages file.
		slices.SortFunc(pieces, func(a, b piece) int {
			af, _ := a.file()
			bf, _ := b.file()
			return cmp.Compare(af, bf)
		})
		err := r.writePieces(pr, pieces, progress)
		pieces = pieces[:0]
		return err
	}
	// The runs, read again: the loaded checkpoint does not hold them.
	err = eachRun(pr, func(e image.PageEntry) error {
		for _, p := range subtract(vdso.Range{Start: e.Vaddr, End: e.Vaddr + e.NrPages*pageSize}, skip) {
			in, fresh := split(p, r.keep)
			for _, f := range fresh {
				pieces = append(pieces, piece{e, f, 0})
			}
			for _, k := range in {
				born, zeros := split(k, parent.ranges)
				for _, z := range zeros {
					pieces = append(pieces, piece{e, z, 0})
				}
				for _, b := range born {
					kept = append(kept, piece{e, b, 0})
				}
			}
			written = append(written, in...)
		}
		if len(pieces) < batchCalls {
			return nil
		}
		return flush()
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if len(r.keep) > 0 {
		if err := r.writeKept(pr, parent, kept, progress); err != nil {
			return err
		}
		slices.SortFunc(written, func(a, b vdso.Range) int { return cmp.Compare(a.Start, b.Start) })
		if err := r.dropUnwritten(parent, written); err != nil {
			return err
		}
	}
	return r.writeShmem()
}

// A piece is the part r of run e, whose first page goes at e.Vaddr+shift
// in the process.
type piece struct {
	e     image.PageEntry
	r     vdso.Range
	shift uint64
}

// file is where the piece's contents are in the pages file.
func (p piece) file() (from, to int64) {
	from = p.e.Offset + int64(p.r.Start-p.e.Vaddr)
	return from, from + int64(p.r.End-p.r.Start)
}

// writePieces writes pieces, in the order of the pages file, into the
// process: those it can through a userfaultfd (copyPieces); the pages of
// the others longer than a page are faulted in from inside the process
// first (MADV_POPULATE_WRITE: much faster than process_vm_writev faulting
// them one by one; kernels before 5.14 lack it, and then the writes fault
// them), populateChunk bytes at a time: those of the next chunk while
// cryo writes the chunk before, so that the process's faults and cryo's
// copies take two CPUs at once. done, if set, is told how many bytes
// each write moved.
func (r *restorer) writePieces(pr *image.PageReader, pieces []piece, done func(n uint64)) error {
	pieces, err := r.copyPieces(pr, pieces, done)
	if err != nil {
		return err
	}
	populate := func(chunk []piece) <-chan error {
		calls := make([]ptrace.Sys, 0, len(chunk))
		for _, p := range chunk {
			if p.r.End-p.r.Start <= pageSize {
				// As fast faulted by the write, without a call of its
				// own: 30,000 mappings of a page each were restored in
				// 218-238 ms, not 265-300.
				continue
			}
			calls = append(calls, ptrace.Sys{Nr: unix.SYS_MADVISE, Args: [6]uint64{p.r.Start + p.shift, p.r.End - p.r.Start, unix.MADV_POPULATE_WRITE}, MayFail: true})
		}
		faulted := make(chan error, 1)
		if len(calls) == 0 {
			// No trip to another goroutine and back, which costs
			// wakeups: 30,000 single pages take 59 chunks.
			prefetch(pr, chunk)
			faulted <- nil
			return faulted
		}
		go func() {
			prefetch(pr, chunk)
			faulted <- r.syscalls(r.pid, calls, nil)
		}()
		return faulted
	}
	chunk, pieces := cutPieces(pieces, populateChunk)
	faulted := populate(chunk)
	for len(chunk) > 0 {
		if err := <-faulted; err != nil {
			return err
		}
		var next []piece
		if next, pieces = cutPieces(pieces, populateChunk); len(next) > 0 {
			faulted = populate(next)
		}
		if err := r.writeWindows(pr, chunk, done); err != nil {
			if len(next) > 0 {
				<-faulted
			}
			return err
		}
		chunk = next
	}
	return nil
}

// The values of restorer.uffd that are not a descriptor.
const (
	uffdNone = -1
	// uffdUnopened is the userfaultfd copyPieces opens when it first
	// needs it: closing one walks every VMA (60,000 in 3-4 ms), a cost
	// for nothing where every piece is small.
	uffdUnopened = -2
)

// openUffd makes a userfaultfd in the process and returns cryo's
// descriptor of it, through which cryo fills the process's memory; -1 if
// the kernel has none or refuses it (vm.unprivileged_userfaultfd does not
// bind root; a seccomp filter might), and then the pages are faulted in
// and written. The process's own descriptor is closed at once: it never
// runs with it.
func (r *restorer) openUffd() int {
	fd, err := r.tr.Syscall(r.pid, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		r.log.Debug("no userfaultfd: pages faulted in, then written", "pid", r.pid, "err", err)
		return -1
	}
	ours, err := kernel.Getfd(r.pid, int(fd))
	if cerr := r.sys(unix.SYS_CLOSE, fd); err == nil && cerr != nil {
		unix.Close(ours)
		err = cerr
	}
	if err == nil {
		if _, err = kernel.UffdHandshake(ours, 0); err != nil {
			unix.Close(ours)
		}
	}
	if err != nil {
		r.log.Debug("no userfaultfd: pages faulted in, then written", "pid", r.pid, "err", err)
		return -1
	}
	return ours
}

// uffdMin is the smallest piece copyPieces copies: a piece of a few pages
// gains little, and costs two calls more (register, unregister), which
// split its VMA and merge it again.
const uffdMin = 16 * pageSize

// copyPieces copies the pieces of uffdMin bytes or more into the process
// through its userfaultfd, if it may have one (r.uffd), and returns the others:
// UFFDIO_COPY allocates each page and copies into it, where faulting it
// in zeroes it first. A piece that is not anonymous memory (a private
// file mapping's), which a userfaultfd does not take, is returned whole;
// what of a piece one copy could not fill (a window across two VMAs, one
// that finds a page there already, or not whole huge pages), in parts.
func (r *restorer) copyPieces(pr *image.PageReader, pieces []piece, done func(n uint64)) ([]piece, error) {
	if r.uffd == uffdNone {
		return pieces, nil
	}
	var rest []piece
	for _, p := range pieces {
		at, n := p.r.Start+p.shift, p.r.End-p.r.Start
		if n < uffdMin {
			rest = append(rest, p)
			continue
		}
		if r.uffd == uffdUnopened {
			r.uffd = r.openUffd()
		}
		if r.uffd < 0 || kernel.UffdRegister(r.uffd, at, n) != nil {
			rest = append(rest, p)
			continue
		}
		from, _ := p.file()
		// The file is read ahead a populateChunk at a time, one ahead
		// of the copies, as writePieces does.
		readAhead := func(off uint64) {
			if off < n {
				pr.Prefetch(from+int64(off), int64(min(populateChunk, n-off)))
			}
		}
		readAhead(0)
		var mu sync.Mutex // guards done and left
		var left []piece
		err := inParallel(int((n+writeChunk-1)/writeChunk), func(i int) error {
			off := uint64(i) * writeChunk
			w := min(writeChunk, n-off)
			if off%populateChunk == 0 {
				readAhead(off + populateChunk)
			}
			data, release, err := pr.MapFile(from+int64(off), int64(w))
			if err != nil {
				return err
			}
			copied, err := kernel.UffdCopy(r.uffd, at+off, data)
			release()
			mu.Lock()
			defer mu.Unlock()
			if done != nil {
				done(uint64(copied))
			}
			// A window the copy cannot fill, as not whole huge pages
			// (EINVAL; their VMA registers where its bounds are a
			// piece's), goes the other way too.
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EINVAL) && copied == 0 {
				lp := p
				lp.r = vdso.Range{Start: p.r.Start + off + uint64(copied), End: p.r.Start + off + w}
				left, err = append(left, lp), nil
			}
			if err != nil {
				return fmt.Errorf("write pages: %w", err)
			}
			return nil
		})
		if uerr := kernel.UffdUnregister(r.uffd, at, n); err == nil {
			err = uerr
		}
		if err != nil {
			return nil, err
		}
		slices.SortFunc(left, func(a, b piece) int { return cmp.Compare(a.r.Start, b.r.Start) })
		rest = append(rest, left...)
	}
	return rest, nil
}

// prefetch has the pages file's contents of pieces, which are in its
// order, read into the page cache in the background: each stretch of
// them with one call. The images of a dump may have left the page cache
// (DAMON's reclaim on this machine pages out cold page cache; a reboot
// empties it): 1 GiB was then restored in 1.7-2.6 s, and in 0.67-0.88
// with this, its disk reading it in 0.6-0.76 (CRIU 4.2: 0.95-2.06 s).
func prefetch(pr *image.PageReader, pieces []piece) {
	if len(pieces) == 0 {
		return
	}
	from, to := pieces[0].file()
	for _, p := range pieces[1:] {
		f, t := p.file()
		if f != to {
			pr.Prefetch(from, to-from)
			from = f
		}
		to = t
	}
	pr.Prefetch(from, to-from)
}

// cutPieces returns the first n bytes of pieces, with populateCalls
// pieces longer than a page at most (each a call of populate's), the last
// piece split if need be, and the rest.
func cutPieces(pieces []piece, n uint64) (head, rest []piece) {
	calls := 0
	for i, p := range pieces {
		if p.r.End-p.r.Start > pageSize {
			if calls == populateCalls {
				return pieces[:i], pieces[i:]
			}
			calls++
		}
		if size := p.r.End - p.r.Start; size <= n {
			if n -= size; n == 0 {
				return pieces[:i+1], pieces[i+1:]
			}
			continue
		}
		// A copy: rest keeps the other part of p where p was.
		head = append(pieces[:i:i], p)
		head[i].r.End = p.r.Start + n
		rest = pieces[i:]
		rest[0].r.Start += n
		return head, rest
	}
	return pieces, nil
}

// writeWindows writes pieces, in the order of the pages file and faulted
// in, into the process: those within writeChunk bytes of the file at a
// time are mapped from it together and written with one
// process_vm_writev, by writers at once.
func (r *restorer) writeWindows(pr *image.PageReader, pieces []piece, done func(n uint64)) error {
	var windows [][]piece
	for len(pieces) > 0 {
		if p := pieces[0]; p.r.End-p.r.Start > writeChunk {
			// A piece longer than a window goes a window at a time.
			p.r.End = p.r.Start + writeChunk
			pieces[0].r.Start = p.r.End
			windows = append(windows, []piece{p})
			continue
		}
		from, to := pieces[0].file()
		n := 1
		for ; n < len(pieces); n++ {
			f, t := pieces[n].file()
			if f < to || t-from > writeChunk {
				break
			}
			to = t
		}
		windows, pieces = append(windows, pieces[:n]), pieces[n:]
	}
	var mu sync.Mutex // guards done
	return inParallel(len(windows), func(i int) error {
		n, err := r.writeWindow(pr, windows[i])
		if err == nil && done != nil {
			mu.Lock()
			done(n)
			mu.Unlock()
		}
		return err
	})
}

// writeWindow writes pieces that lie in order within writeChunk bytes of
// the pages file, mapped from it together, with one process_vm_writev,
// and returns how many bytes it wrote.
func (r *restorer) writeWindow(pr *image.PageReader, pieces []piece) (uint64, error) {
	from, _ := pieces[0].file()
	_, to := pieces[len(pieces)-1].file()
	data, release, err := pr.MapFile(from, to-from)
	if err != nil {
		return 0, err
	}
	defer release()
	segs := make([]ptrace.Segment, len(pieces))
	var n uint64
	for i, p := range pieces {
		f, t := p.file()
		segs[i] = ptrace.Segment{Addr: p.r.Start + p.shift, Data: data[f-from : t-from]}
		n += uint64(t - f)
	}
	if err := r.tr.WriteMemVMBatch(segs); err != nil {
		return 0, fmt.Errorf("write pages: %w", err)
	}
	return n, nil
}

// protect gives every VMA its final protection and madvise flags, then
// puts back the guard regions and locks what was locked.
func (r *restorer) protect() error {
	if err := r.protectVMAs(); err != nil {
		return err
	}
	// A locked VMA takes no guard regions: these were installed before
	// any lock.
	for _, g := range r.c.guards {
		if err := r.sys(unix.SYS_MADVISE, g.start, g.end-g.start, madvGuardInstall); err != nil {
			return fmt.Errorf("install guard region %#x-%#x (MADV_GUARD_INSTALL, Linux >= 6.13): %w", g.start, g.end, err)
		}
	}
	// The restore runs with CAP_IPC_LOCK, so the process's
	// RLIMIT_MEMLOCK, which it may have lowered since it locked this
	// memory, does not stop it.
	locks := callBatch{r: r, what: func(_ *ptrace.Sys, v *vma) string {
		return fmt.Sprintf("lock VMA %#x-%#x", v.start, v.end)
	}}
	for v := range r.c.vmas.all() {
		if v.flags&unix.MAP_LOCKED == 0 || v.status&(image.VMAAreaVDSO|image.VMAAreaVVAR|image.VMAAreaIOUring) != 0 {
			continue
		}
		if err := locks.add(ptrace.Sys{Nr: unix.SYS_MLOCK, Args: [6]uint64{v.start, v.end - v.start}}, v); err != nil {
			return err
		}
	}
	return locks.flush()
}

// protectVMAs gives every VMA its final protection and madvise flags.
func (r *restorer) protectVMAs() error {
	calls := callBatch{r: r, what: func(c *ptrace.Sys, v *vma) string {
		if c.Nr == unix.SYS_MPROTECT {
			return fmt.Sprintf("protect VMA %#x-%#x", v.start, v.end)
		}
		return fmt.Sprintf("madvise %d on %#x-%#x", c.Args[2], v.start, v.end)
	}}
	for v := range r.c.vmas.all() {
		if v.status&(image.VMAAreaVDSO|image.VMAAreaVVAR|image.VMAAreaIOUring) != 0 {
			continue
		}
		start, length := v.start, v.end-v.start
		if r.writableProt(v) != v.prot {
			if err := calls.add(ptrace.Sys{Nr: unix.SYS_MPROTECT, Args: [6]uint64{start, length, uint64(v.prot)}}, v); err != nil {
				return err
			}
		}
		for bit := range uint64(64) {
			if v.madv&(1<<bit) == 0 {
				continue
			}
			if err := calls.add(ptrace.Sys{Nr: unix.SYS_MADVISE, Args: [6]uint64{start, length, bit}}, v); err != nil {
				return err
			}
		}
	}
	return calls.flush()
}

// setMM sets the mm fields, auxiliary vector and executable with one
// prctl(PR_SET_MM_MAP), and whether transparent huge pages are disabled.
func (r *restorer) setMM() error {
	m := r.c.mm
	// A deleted executable is recreated (it was when its mappings were).
	exe, err := r.files.Path(m.GetExeFileId())
	if err != nil {
		return fmt.Errorf("executable: %w", err)
	}
	exeFD := uint64(kernel.KeepExe)
	if same, err := sameFile(exe, proc.Path(r.pid, "exe")); err != nil {
		return fmt.Errorf("executable %s: %w", exe, err)
	} else if !same {
		// The kernel refuses to replace an executable that is still
		// mapped: when the process's is the stub's own (cryo restoring
		// cryo), it stays.
		if exeFD, err = r.open(exe, unix.O_RDONLY, 0); err != nil {
			return fmt.Errorf("open executable %s: %w", exe, err)
		}
		defer r.sys(unix.SYS_CLOSE, exeFD)
	}
	auxv := kernel.Encode(m.MmSavedAuxv)
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	mmMap := kernel.PrctlMmMap{
		StartCode: m.GetMmStartCode(), EndCode: m.GetMmEndCode(),
		StartData: m.GetMmStartData(), EndData: m.GetMmEndData(),
		StartBrk: m.GetMmStartBrk(), Brk: m.GetMmBrk(), StartStack: m.GetMmStartStack(),
		ArgStart: m.GetMmArgStart(), ArgEnd: m.GetMmArgEnd(),
		EnvStart: m.GetMmEnvStart(), EnvEnd: m.GetMmEnvEnd(),
		AuxvSize: uint32(len(auxv)), ExeFD: uint32(exeFD),
	}
	structSize := uint64(binary.Size(mmMap))
	mmMap.Auxv = scratch + structSize
	b := append(kernel.Encode(mmMap), auxv...)
	if len(b) > scratchSize {
		return fmt.Errorf("%w: %d-byte auxiliary vector", ErrImage, len(auxv))
	}
	if err := r.tr.WriteMem(scratch, b); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, scratch, structSize); err != nil {
		return fmt.Errorf("prctl PR_SET_MM_MAP: %w", err)
	}
	// The stub's flag is cryo's; the dumpable flag comes with the
	// credentials, which reset it.
	thp := uint64(0)
	if m.GetThpDisabled() {
		thp = 1
	}
	if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_THP_DISABLE, thp, 0, 0, 0); err != nil {
		return fmt.Errorf("set THP disable %d: %w", thp, err)
	}
	return nil
}

// sameFile reports whether two paths name the same file.
func sameFile(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
