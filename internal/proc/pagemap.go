package proc

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// /proc/PID/pagemap holds one native-endian 64-bit entry per virtual page,
// at offset vaddr/pagesize*8 (Documentation/admin-guide/mm/pagemap.rst).
// Its bits, tested by the Page* functions:
const (
	pmPresent    = 1 << 63
	pmSwapped    = 1 << 62
	pmFileShAnon = 1 << 61
	pmGuard      = 1 << 58
	pmExclusive  = 1 << 56
	pmSoftDirty  = 1 << 55
)

const pageSize = kernel.PageSize

// PagePresent reports whether the page is in RAM.
func PagePresent(e uint64) bool { return e&pmPresent != 0 }

// PageSwapped reports whether the page is in swap.
func PageSwapped(e uint64) bool { return e&pmSwapped != 0 }

// PageFileOrSharedAnon reports whether the page is a page-cache page of a
// file or shared anonymous memory, rather than a private anonymous (or
// copied-on-write) page.
func PageFileOrSharedAnon(e uint64) bool { return e&pmFileShAnon != 0 }

// PageExclusive reports whether the page is mapped by this process only.
func PageExclusive(e uint64) bool { return e&pmExclusive != 0 }

// PageSoftDirty reports whether the page was written since the soft-dirty
// bits were last cleared; always false without CONFIG_MEM_SOFT_DIRTY.
func PageSoftDirty(e uint64) bool { return e&pmSoftDirty != 0 }

// PageGuard reports whether the page is in a guard region
// (madvise(MADV_GUARD_INSTALL), reported since Linux 6.15). Its entry also
// has the swapped bit: the kernel keeps the guard as a marker in place of
// a swap entry.
func PageGuard(e uint64) bool { return e&pmGuard != 0 }

// PresentOrSwapped reports whether the page has contents: the pages a dump
// copies. A guard region has none.
func PresentOrSwapped(e uint64) bool { return e&(pmPresent|pmSwapped) != 0 && e&pmGuard == 0 }

// ReadPagemap reads the entries of the pages in [start, end), both
// page-aligned, from an open /proc/PID/pagemap with one pread. That costs 8
// bytes per page of the range: walk large mappings with a PagemapReader.
func ReadPagemap(f io.ReaderAt, start, end uint64) ([]uint64, error) {
	if err := checkPageRange(start, end); err != nil {
		return nil, err
	}
	entries := make([]uint64, (end-start)/pageSize)
	if err := readPagemap(f, start, entries, make([]byte, 8*len(entries))); err != nil {
		return nil, err
	}
	return entries, nil
}

// readPagemap fills entries from the pagemap of the pages from start on,
// through buf of 8*len(entries) bytes.
func readPagemap(f io.ReaderAt, start uint64, entries []uint64, buf []byte) error {
	if _, err := f.ReadAt(buf, int64(start/pageSize*8)); err != nil {
		// The kernel gives no entries past the user address space
		// ([vsyscall]): a short read.
		return fmt.Errorf("read pagemap at %#x, %d pages: %w", start, len(entries), err)
	}
	for i := range entries {
		entries[i] = binary.NativeEndian.Uint64(buf[8*i:])
	}
	return nil
}

func checkPageRange(start, end uint64) error {
	if start%pageSize != 0 || end%pageSize != 0 || end <= start {
		return fmt.Errorf("pagemap range %#x-%#x: not a non-empty page-aligned range", start, end)
	}
	return nil
}

// PageRun is a run of adjacent pages.
type PageRun struct {
	// Addr is the address of the first page.
	Addr uint64
	// Pages is the number of pages.
	Pages uint64
}

// PageRuns gives the runs of adjacent pages whose entries pass keep (often
// PresentOrSwapped), for the entries of the pages from start on.
func PageRuns(start uint64, entries []uint64, keep func(uint64) bool) []PageRun {
	return appendRuns(nil, start, entries, keep)
}

// appendRuns appends the runs of entries to runs, extending the last run if
// it ends at start.
func appendRuns(runs []PageRun, start uint64, entries []uint64, keep func(uint64) bool) []PageRun {
	for i, e := range entries {
		if !keep(e) {
			continue
		}
		addr := start + uint64(i)*pageSize
		if n := len(runs); n > 0 && runs[n-1].Addr+runs[n-1].Pages*pageSize == addr {
			runs[n-1].Pages++
		} else {
			runs = append(runs, PageRun{addr, 1})
		}
	}
	return runs
}

// pagemapChunk is how many entries a PagemapReader reads at most per
// pread: 512 KiB of entries for 256 MiB of address space (with 4 KiB
// pages).
var pagemapChunk uint64 = 64 << 10

// PageRange is a page-aligned range of addresses, [Start, End).
type PageRange struct{ Start, End uint64 }

// PagemapReader reads the entries of the pages of ranges from an open
// /proc/PID/pagemap, a window of entries at a time: one pread covers as
// many of the ranges that follow one another as fit in pagemapChunk
// entries (the gaps between them too), so that a process of many small
// mappings costs a read per chunk of them, not one each, and a huge
// sparse mapping a bounded buffer.
type PagemapReader struct {
	f      io.ReaderAt
	ranges []PageRange
	// start is the address of the page of entries[0].
	start   uint64
	entries []uint64
	buf     []byte
}

// NewPagemapReader reads the pagemap f for ranges, sorted by address and
// not overlapping.
func NewPagemapReader(f io.ReaderAt, ranges []PageRange) *PagemapReader {
	return &PagemapReader{f: f, ranges: ranges}
}

// Runs gives the runs of pages in [start, end), part of one of the
// reader's ranges, whose entries pass keep.
func (p *PagemapReader) Runs(start, end uint64, keep func(uint64) bool) ([]PageRun, error) {
	if err := checkPageRange(start, end); err != nil {
		return nil, err
	}
	var runs []PageRun
	for addr := start; addr < end; {
		if addr < p.start || addr >= p.windowEnd() {
			if err := p.fill(addr); err != nil {
				return nil, err
			}
		}
		upto := min(end, p.windowEnd())
		runs = appendRuns(runs, addr, p.entries[(addr-p.start)/pageSize:(upto-p.start)/pageSize], keep)
		addr = upto
	}
	return runs, nil
}

func (p *PagemapReader) windowEnd() uint64 { return p.start + uint64(len(p.entries))*pageSize }

// fill reads the window of entries from addr on: to the end of its range,
// or of the last of the ranges after it that ends within pagemapChunk
// pages of addr, but no further.
func (p *PagemapReader) fill(addr uint64) error {
	limit := addr + pagemapChunk*pageSize
	i, _ := slices.BinarySearchFunc(p.ranges, addr, func(r PageRange, a uint64) int { return cmp.Compare(r.End, a+1) })
	if i == len(p.ranges) || p.ranges[i].Start > addr {
		return fmt.Errorf("read pagemap at %#x: not in a range of the reader", addr)
	}
	end := min(p.ranges[i].End, limit)
	for _, r := range p.ranges[i+1:] {
		if r.End > limit {
			break
		}
		end = r.End
	}
	n := (end - addr) / pageSize
	if uint64(cap(p.entries)) < n {
		p.entries, p.buf = make([]uint64, n), make([]byte, 8*n)
	}
	p.start, p.entries = addr, p.entries[:n]
	if err := readPagemap(p.f, addr, p.entries, p.buf[:8*n]); err != nil {
		p.entries = p.entries[:0]
		return err
	}
	return nil
}
