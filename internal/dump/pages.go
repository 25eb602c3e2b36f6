package dump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/steps"
)

const (
	pageSize = kernel.PageSize
	// copyChunk is how much memory one process_vm_readv moves: large
	// enough that system calls are a small part of the cost, small enough
	// for cryo's own footprint, and its two buffers stay in the CPU's
	// caches. Each page of a buffer is a page fault the first time (14-30
	// us here): with 256 KiB, a dump of 16 MiB took 83 ms where 1 MiB
	// took 93 (medians of 6, interleaved), and 1 GiB as long (0.88-0.94 s
	// against 0.87-0.93) at 10 MiB peak RSS instead of 11.6. 4 MiB took
	// 2.9 s for 1 GiB where 1 MiB took 1.2.
	copyChunk = 256 << 10
	// maxIov is the kernel's IOV_MAX.
	maxIov = 1024
	// sparseArea is the size from which an area has the parts that hold
	// pages found first (populated), and only their pagemap read: a
	// PAGEMAP_SCAN of a full 1 GiB costs about as much as reading 64 MiB
	// of its pagemap.
	sparseArea = 64 << 20
	// scanGap is the shortest hole between parts of an area that is not
	// read: 1 MiB of address space is 2 KiB of pagemap.
	scanGap = 1 << 20
)

// pageStats counts what the page copy did.
type pageStats struct {
	pages uint64
}

// run is a range of pages to copy and how to read it.
type run struct {
	addr, n uint64 // n in bytes
	viaMem  bool
	// base is the address of offset 0 of what the run is stored in: 0 for
	// the process's pages, the object's for shared memory.
	base uint64
}

// shmemRuns are the runs of one shared memory object, in the order of
// their offsets in it, each read at an address where the process maps it.
type shmemRuns struct {
	shmid uint64
	runs  []run
}

// splitOwn returns the runs of all, split where they meet own, both sorted:
// the parts in own read as viaMem says, the others through
// /proc/PID/mem.
func splitOwn(all, own []proc.PageRun, viaMem bool) []run {
	var rs []run
	for _, r := range all {
		for addr, end := r.Addr, r.Addr+r.Pages*pageSize; addr < end; {
			for len(own) > 0 && own[0].Addr+own[0].Pages*pageSize <= addr {
				own = own[1:]
			}
			next, mine := end, false
			switch {
			case len(own) > 0 && own[0].Addr <= addr:
				next, mine = min(end, own[0].Addr+own[0].Pages*pageSize), true
			case len(own) > 0 && own[0].Addr < end:
				next = own[0].Addr
			}
			rs = append(rs, run{addr, next - addr, viaMem || !mine, 0})
			addr = next
		}
	}
	return rs
}

// runLister lists the pages to dump of areas given in address order, a
// batch at a time: the process's own, and those of each shared memory
// object.
type runLister struct {
	runs   []run
	shared map[uint64][]run
	shmids []uint64 // the objects' ids, in the order found
	// noScan is set once the kernel has no PAGEMAP_SCAN (before Linux
	// 6.7): every area's pagemap is read whole then.
	noScan bool
}

// add lists the pages of areas, which follow those added before, read
// from pagemap.
func (l *runLister) add(pagemap *os.File, areas []area) error {
	// The parts of each area whose pagemap is read: the whole area, or
	// for a large one the parts that hold pages.
	parts := make([][]proc.PageRange, len(areas))
	var ranges []proc.PageRange
	for i, a := range areas {
		if a.dump == nil || a.all {
			continue
		}
		parts[i] = []proc.PageRange{{Start: a.start, End: a.end}}
		if a.end-a.start >= sparseArea && !l.noScan {
			p, err := populated(pagemap, a.start, a.end)
			switch {
			case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL):
				l.noScan = true
			case err != nil:
				return err
			default:
				parts[i] = p
			}
		}
		ranges = append(ranges, parts[i]...)
	}
	pm := proc.NewPagemapReader(pagemap, ranges)
	for i, a := range areas {
		var rs []run
		if a.all {
			rs = []run{{a.start, a.end - a.start, a.viaMem, 0}}
		}
		for _, p := range parts[i] {
			prs, err := a.runs(pm, p.Start, p.End)
			if err != nil {
				return fmt.Errorf("read pagemap of %#x-%#x: %w", p.Start, p.End, err)
			}
			rs = append(rs, prs...)
		}
		if !a.shared {
			l.runs = append(l.runs, rs...)
			continue
		}
		if _, ok := l.shared[a.shmid]; !ok {
			if l.shared == nil {
				l.shared = map[uint64][]run{}
			}
			l.shmids = append(l.shmids, a.shmid)
		}
		l.shared[a.shmid] = append(l.shared[a.shmid], rs...)
	}
	return nil
}

// runs lists the pages to dump of the area's part [start, end), read
// from pm.
func (a *area) runs(pm *proc.PagemapReader, start, end uint64) ([]run, error) {
	if a.shared {
		prs, err := pm.Runs(start, end, a.dump)
		if err != nil {
			return nil, err
		}
		rs := make([]run, 0, len(prs))
		for _, r := range prs {
			rs = append(rs, run{r.Addr, r.Pages * pageSize, a.viaMem, a.base})
		}
		return rs, nil
	}
	// process_vm_readv pins the pages it reads, and pinning a private
	// page shared copy-on-write (with a parent or a child) copies it:
	// those are read through /proc/PID/mem, which does not, so that the
	// processes share them still. Which pages to read comes from one
	// read of the pagemap (for a mapping of up to a window): a page may
	// stop being shared between two reads (its sharer wrote it), and
	// must not fall between them.
	all, err := pm.Runs(start, end, a.dump)
	if err != nil {
		return nil, err
	}
	own, err := pm.Runs(start, end, func(e uint64) bool {
		return a.dump(e) && proc.PageExclusive(e)
	})
	if err != nil {
		return nil, err
	}
	return splitOwn(all, own, a.viaMem), nil
}

// populated returns the parts of [start, end) that hold pages, present
// or swapped out, as the kernel finds them walking the page tables
// (PAGEMAP_SCAN), without reading an entry per page: a reservation of
// terabytes (MariaDB's, V8's) has gigabytes of pagemap entries. Holes
// shorter than scanGap are kept in the parts.
func populated(pagemap *os.File, start, end uint64) ([]proc.PageRange, error) {
	var parts []proc.PageRange
	err := scanPagemap(pagemap, start, end, 0, kernel.PageIsPresent|kernel.PageIsSwapped, func(r kernel.PageRegion) {
		if k := len(parts); k > 0 && r.Start-parts[k-1].End < scanGap {
			parts[k-1].End = r.End
		} else {
			parts = append(parts, proc.PageRange{Start: r.Start, End: r.End})
		}
	})
	return parts, err
}

// scanPagemap calls each with the regions of [start, end) whose pages are
// in every category of all and in one or more of anyOf, in order, as
// PAGEMAP_SCAN finds them in pagemap.
func scanPagemap(pagemap *os.File, start, end, all, anyOf uint64, each func(kernel.PageRegion)) error {
	vec := make([]kernel.PageRegion, 64)
	for start < end {
		n, walkEnd, err := kernel.PagemapScan(int(pagemap.Fd()), start, end, all, anyOf, vec)
		if err != nil {
			return fmt.Errorf("scan pagemap from %#x: %w", start, err)
		}
		for _, r := range vec[:n] {
			each(r)
		}
		if walkEnd <= start {
			return fmt.Errorf("scan pagemap from %#x: the walk ended at %#x", start, walkEnd)
		}
		start = walkEnd
	}
	return nil
}

// objects gives the runs of each shared memory object, in the order of
// their offsets in it.
func (l *runLister) objects() []shmemRuns {
	var objects []shmemRuns
	for _, id := range l.shmids {
		objects = append(objects, shmemRuns{shmid: id, runs: byOffset(l.shared[id])})
	}
	return objects
}

// guardRegions lists the guard regions (madvise(MADV_GUARD_INSTALL)) in
// [start, end) as CRIU keeps them: VMA entries of their own, to go after
// the others. The kernel finds them with PAGEMAP_SCAN, without reading the
// pagemap of every mapping; one that cannot (before Linux 6.15) has none
// to report or fails the dump when it reads them.
func guardRegions(pagemap *os.File, start, end uint64) ([]*pb.VmaEntry, error) {
	var guards []*pb.VmaEntry
	err := scanPagemap(pagemap, start, end, kernel.PageIsGuard, 0, func(r kernel.PageRegion) {
		guards = append(guards, &pb.VmaEntry{
			Start: r.Start, End: r.End,
			Pgoff: 0, Shmid: 0, Prot: 0, Flags: 0,
			Status: image.VMAAreaGuard, Fd: -1,
		})
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find guard regions: %w", err)
	}
	return guards, nil
}

// byOffset orders the runs of one object by their offsets in it, and
// drops what an earlier run holds already: an object mapped twice over the
// same offsets shows the same pages twice.
func byOffset(rs []run) []run {
	slices.SortStableFunc(rs, func(a, b run) int { return cmp.Compare(a.addr-a.base, b.addr-b.base) })
	var out []run
	var end uint64 // object offset the runs so far reach
	for _, r := range rs {
		off := r.addr - r.base
		if off+r.n <= end {
			continue
		}
		if off < end {
			r.addr += end - off
			r.n -= end - off
			off = end
		}
		out = append(out, r)
		end = off + r.n
	}
	return out
}

// copyPages copies the runs from process pid into w, each at its address
// less its base, progress reporting bytes done after each chunk. Reading
// the next chunk out of the process overlaps writing the last one, with
// two buffers in flight.
func copyPages(ctx context.Context, pid int, mem *os.File, runs []run, w *image.PageWriter, progress func(done uint64)) (pageStats, error) {
	type chunk struct {
		data   []byte
		pieces []run
	}
	free := make(chan []byte, 2)
	free <- make([]byte, copyChunk)
	free <- make([]byte, copyChunk)
	full := make(chan chunk)
	failed := make(chan struct{}) // closed when the writer stops on an error
	var st pageStats
	var werr error
	go func() {
		defer close(free)
		var done uint64
		for c := range full {
			werr = w.WriteRanges(c.data, func(yield func(uint64, uint64) bool) {
				for _, p := range c.pieces {
					if !yield(p.addr-p.base, p.n) {
						return
					}
				}
			})
			if werr != nil {
				close(failed)
				return
			}
			n := uint64(len(c.data))
			done += n
			st.pages += n / pageSize
			if progress != nil {
				progress(done)
			}
			free <- c.data[:cap(c.data)]
		}
	}()
	err := readChunks(ctx, pid, mem, runs, free, func(data []byte, pieces []run) bool {
		select {
		case full <- chunk{data, pieces}:
			return true
		case <-failed:
			return false
		}
	})
	close(full)
	for range free { // until the writer is done
	}
	if werr != nil {
		return st, werr
	}
	return st, err
}

// readChunks reads the runs chunk by chunk into buffers taken from free
// and hands each to emit, until emit says to stop or free is closed.
func readChunks(ctx context.Context, pid int, mem *os.File, runs []run, free chan []byte, emit func([]byte, []run) bool) error {
	for len(runs) > 0 {
		if err := steps.Cancelled(ctx); err != nil {
			return err
		}
		// Gather runs into one chunk; a run larger than the chunk is
		// split, and one read through /proc/PID/mem goes alone.
		var iov []unix.RemoteIovec
		var pieces []run
		filled := uint64(0)
		for len(runs) > 0 && filled < copyChunk && len(iov) < maxIov {
			r := runs[0]
			if r.viaMem && len(pieces) > 0 {
				break
			}
			n := min(r.n, copyChunk-filled)
			pieces = append(pieces, run{r.addr, n, r.viaMem, r.base})
			filled += n
			advance(&runs, n)
			if r.viaMem {
				break
			}
			iov = append(iov, unix.RemoteIovec{Base: uintptr(r.addr), Len: int(n)})
		}
		buf, ok := <-free
		if !ok {
			return nil // the writer stopped; it has the error
		}
		data := buf[:filled]
		if pieces[0].viaMem {
			if _, err := mem.ReadAt(data, int64(pieces[0].addr)); err != nil {
				return fmt.Errorf("read memory of pid %d at %#x: %w", pid, pieces[0].addr, err)
			}
		} else {
			local := []unix.Iovec{{Base: &data[0]}}
			local[0].SetLen(len(data))
			got, err := unix.ProcessVMReadv(pid, local, iov, 0)
			if err != nil {
				return fmt.Errorf("read memory of pid %d at %#x: %w", pid, pieces[0].addr, err)
			}
			if uint64(got) != filled {
				return fmt.Errorf("read memory of pid %d at %#x: %d of %d bytes", pid, pieces[0].addr, got, filled)
			}
		}
		if !emit(data, pieces) {
			return nil
		}
	}
	return nil
}

// advance consumes n bytes from the first run.
func advance(runs *[]run, n uint64) {
	r := &(*runs)[0]
	r.addr += n
	r.n -= n
	if r.n == 0 {
		*runs = (*runs)[1:]
	}
}
