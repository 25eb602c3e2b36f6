package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"os"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"golang.org/x/sys/unix"
)

// Pagemap entry flags (pagemap_entry.flags), as CRIU defines them.
const (
	PEParent  = 1 << 0 // the pages are in the parent dump (incremental dumps)
	PELazy    = 1 << 1 // the pages are served on demand, not stored here
	PEPresent = 1 << 2 // the pages are stored in this dump's pages file
)

// PageWriter stores a process's memory: raw page contents go to
// pages-N.img, and pagemap-PID.img records where each run of pages belongs.
// It is not safe for concurrent use.
type PageWriter struct {
	pm    *Writer
	pages *bufio.Writer
	ff    *flushingFile // the pages file
	done  func(error)
	name  string // of the pages file
	psize uint64

	vaddr, nr uint64 // the entry being extended; nr == 0 if none
	end       uint64 // end of the last range written: ranges must ascend
	err       error
}

// CreatePages starts pagemap-pid.img and pages-pagesID.img.
func (d *Dir) CreatePages(pid, pagesID uint32) (*PageWriter, error) {
	return d.createPages(Pagemap, pid, pagesID)
}

// CreateShmemPages starts pagemap-shmem-shmid.img and
// pages-pagesID.img: the contents of a shared memory object, stored once
// however many mappings it has.
func (d *Dir) CreateShmemPages(shmid uint64, pagesID uint32) (*PageWriter, error) {
	return d.createPages(ShmemPagemap, uint32(shmid), pagesID)
}

func (d *Dir) createPages(k Kind, id, pagesID uint32) (*PageWriter, error) {
	pm, err := d.Create(k, id)
	if err != nil {
		return nil, err
	}
	if err := pm.Write(&pb.PagemapHead{PagesId: pagesID}); err != nil {
		pm.Close()
		return nil, err
	}
	f, done, err := d.createFile(Pages, pagesID)
	if err != nil {
		pm.Close()
		return nil, err
	}
	ff := &flushingFile{f: f, d: d}
	return &PageWriter{
		pm: pm,
		// Large enough that the writes of small runs coalesce; writes of
		// at least this size go to the file directly, without a copy. A
		// dump copies memory in chunks that it writes whole
		// (WriteRanges): a buffer as large would be RSS for nothing.
		pages: bufio.NewWriterSize(ff, 32<<10),
		ff:    ff,
		done:  done,
		name:  Pages.FileName(pagesID),
		psize: kernel.PageSize,
	}, nil
}

// WritePages stores data, a whole number of pages, as the contents of the
// memory at vaddr. Ranges must come in ascending address order; adjacent
// ones share a pagemap entry.
func (p *PageWriter) WritePages(vaddr uint64, data []byte) error {
	return p.WriteRanges(data, func(yield func(uint64, uint64) bool) { yield(vaddr, uint64(len(data))) })
}

// WriteRanges stores data as the contents of ranges of memory, each an
// address and a length in bytes, laid back to back in it, as WritePages
// would one at a time: the data goes to the pages file in one write, not
// through a buffer.
func (p *PageWriter) WriteRanges(data []byte, ranges iter.Seq2[uint64, uint64]) error {
	if p.err != nil {
		return p.err
	}
	// Checked whole before any is recorded.
	end, total := p.end, uint64(0)
	for vaddr, n := range ranges {
		if n == 0 {
			continue
		}
		if vaddr%p.psize != 0 || n%p.psize != 0 {
			return fmt.Errorf("write %s: %d bytes at %#x: %w: not whole pages", p.name, n, vaddr, ErrPagemap)
		}
		if vaddr < end || vaddr+n < vaddr {
			return fmt.Errorf("write %s: %d bytes at %#x after %#x: %w: ranges must ascend",
				p.name, n, vaddr, end, ErrPagemap)
		}
		end, total = vaddr+n, total+n
	}
	if total != uint64(len(data)) {
		return fmt.Errorf("write %s: %d bytes for ranges of %d", p.name, len(data), total)
	}
	if _, err := p.pages.Write(data); err != nil {
		p.err = fmt.Errorf("write %s: %w", p.name, err)
		return p.err
	}
	for vaddr, n := range ranges {
		if n == 0 {
			continue
		}
		if vaddr != p.end {
			if err := p.flush(); err != nil {
				return err
			}
			p.vaddr = vaddr
		}
		p.nr += n / p.psize
		p.end = vaddr + n
	}
	return nil
}

// flush writes the pending entry. Entries stop at 2^32-1 pages so that
// compat_nr_pages, the only count that CRIU before 3.18 reads, holds the
// true count too.
func (p *PageWriter) flush() error {
	for p.nr > 0 {
		nr := min(p.nr, math.MaxUint32)
		err := p.pm.Write(&pb.PagemapEntry{
			Vaddr:         p.vaddr,
			CompatNrPages: uint32(nr),
			NrPages:       pb.Uint64(nr),
			Flags:         pb.Uint32(PEPresent),
		})
		if err != nil {
			p.err = err
			return err
		}
		p.vaddr += nr * p.psize
		p.nr -= nr
	}
	return nil
}

// Close writes the last entry, then flushes and closes both files. A large
// pages file is being made durable already (see flushingFile), the rest
// by Sync.
func (p *PageWriter) Close() error {
	if errors.Is(p.err, os.ErrClosed) {
		return p.err
	}
	err := p.err
	if err == nil {
		err = p.flush()
	}
	if cerr := p.pm.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if ferr := p.pages.Flush(); ferr != nil {
			err = fmt.Errorf("write %s: %w", p.name, ferr)
		}
	}
	p.ff.finish()
	if cerr := p.ff.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", p.name, cerr)
	}
	p.done(err)
	p.err = fmt.Errorf("write %s: %w", p.name, os.ErrClosed)
	return err
}

// PageEntry is one run of pages from a pagemap.
type PageEntry struct {
	Vaddr   uint64
	NrPages uint64
	Flags   uint32 // PEPresent, PEParent, PELazy
	// Offset is where the run's contents start in the pages file; only
	// entries with PEPresent have contents there.
	Offset int64
}

// PageReader walks a process's pagemap and reads the matching contents
// from its pages file. It is not safe for concurrent use.
type PageReader struct {
	pm    *Reader
	pages io.ReaderAt
	c     io.Closer // the pages file, or nil
	size  int64     // of the pages file
	name  string    // of the pages file
	psize uint64

	off int64  // pages file bytes the entries so far account for
	end uint64 // end of the last entry: entries must ascend
	// entry is the record Next decodes into, one for all: 60,000 of
	// their own were 3 MB of garbage.
	entry pb.PagemapEntry
}

// OpenPages opens pagemap-pid.img and the pages file its head names.
func (d *Dir) OpenPages(pid uint32) (*PageReader, error) {
	return d.openPages(Pagemap, pid)
}

// OpenShmemPages opens the contents of shared memory object shmid.
func (d *Dir) OpenShmemPages(shmid uint64) (*PageReader, error) {
	return d.openPages(ShmemPagemap, uint32(shmid))
}

func (d *Dir) openPages(k Kind, id uint32) (*PageReader, error) {
	pm, err := d.Open(k, id)
	if err != nil {
		return nil, err
	}
	pagesID, err := readHead(pm)
	if err != nil {
		pm.Close()
		return nil, err
	}
	name := Pages.FileName(pagesID)
	f, err := d.openImage(name)
	if err != nil {
		pm.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		pm.Close()
		f.Close()
		return nil, fmt.Errorf("open image: %w", err)
	}
	return &PageReader{pm: pm, pages: f, c: f, size: st.Size(), name: name, psize: kernel.PageSize}, nil
}

// readHead reads the record every pagemap starts with and returns the id
// of its pages file.
func readHead(pm *Reader) (uint32, error) {
	var h pb.PagemapHead
	if err := pm.Next(&h); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read %s: %w: no pagemap head", pm.name, ErrCount)
		}
		return 0, err
	}
	return h.GetPagesId(), nil
}

// Next returns the next entry, or io.EOF, unwrapped, after the last one.
// It checks that entries ascend, cover whole pages and stay within the
// pages file, and that together they account for all of it.
func (p *PageReader) Next() (PageEntry, error) {
	pe := &p.entry
	if err := p.pm.Next(pe); err != nil {
		if errors.Is(err, io.EOF) && p.off != p.size {
			return PageEntry{}, fmt.Errorf("read %s: %w: entries cover %d bytes of %s, which has %d",
				p.pm.name, ErrPagemap, p.off, p.name, p.size)
		}
		return PageEntry{}, err
	}
	e := PageEntry{Vaddr: pe.GetVaddr(), NrPages: uint64(pe.GetCompatNrPages()), Flags: pe.GetFlags(), Offset: p.off}
	// CRIU's rules for what older images leave out.
	if pe.NrPages != nil {
		e.NrPages = pe.GetNrPages()
	}
	if pe.Flags == nil {
		e.Flags = PEPresent
		if pe.GetInParent() {
			e.Flags = PEParent
		}
	}
	bad := func(why string) (PageEntry, error) {
		return PageEntry{}, fmt.Errorf("read %s: entry %#x+%d pages: %w: %s", p.pm.name, e.Vaddr, e.NrPages, ErrPagemap, why)
	}
	switch {
	case e.NrPages == 0:
		return bad("empty")
	case e.Vaddr%p.psize != 0:
		return bad("address not page aligned")
	case e.NrPages > (math.MaxUint64-e.Vaddr)/p.psize:
		return bad("past the end of the address space")
	case e.Vaddr < p.end:
		return bad(fmt.Sprintf("overlaps or precedes the previous entry, which ends at %#x", p.end))
	}
	n := e.NrPages * p.psize // cannot overflow: checked above
	if e.Flags&PEPresent != 0 {
		if n > uint64(p.size-p.off) {
			return bad(fmt.Sprintf("needs %d bytes at offset %d of %s, which has %d", n, p.off, p.name, p.size))
		}
		p.off += int64(n)
	}
	p.end = e.Vaddr + n
	return e, nil
}

// Data returns the contents of e, which must come from this reader; empty
// unless e has PEPresent. Reads from it use ReadAt on the pages file, so
// large chunks cost one system call each.
func (p *PageReader) Data(e PageEntry) *io.SectionReader {
	if e.Flags&PEPresent == 0 {
		return io.NewSectionReader(p.pages, e.Offset, 0)
	}
	return io.NewSectionReader(p.pages, e.Offset, int64(e.NrPages*p.psize))
}

// Close closes both files.
func (p *PageReader) Close() error {
	err := p.pm.Close()
	if p.c != nil {
		if cerr := p.c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", p.name, cerr)
		}
		p.c = nil
	}
	return err
}

// Map returns n bytes of e's contents from offset off, as MapFile does.
func (p *PageReader) Map(e PageEntry, off, n int64) ([]byte, func(), error) {
	if off < 0 || n < 0 || off+n > int64(e.NrPages*p.psize) {
		return nil, nil, fmt.Errorf("map %s: %d bytes at %d of a %d-page run: %w", p.name, n, off, e.NrPages, ErrPagemap)
	}
	return p.MapFile(e.Offset+off, n)
}

// Prefetch asks the kernel to read n bytes of the pages file from offset
// off into the page cache, in the background (POSIX_FADV_WILLNEED), so
// that a later MapFile does not wait for them a window at a time. Over
// any other reader it does nothing; it is advice, whose failure changes
// nothing but the speed.
func (p *PageReader) Prefetch(off, n int64) {
	// A length of 0 would be the rest of the file.
	if f, ok := p.pages.(*os.File); ok && n > 0 {
		unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
	}
}

// MapFile returns n bytes of the pages file from offset off, mapped
// read-only when it is a file and off is page aligned, so that writing
// them into a process copies them once, straight from the page cache; the
// release function unmaps them. Over any other reader they are read into
// memory.
func (p *PageReader) MapFile(off, n int64) ([]byte, func(), error) {
	if off < 0 || n < 0 || off > p.size || n > p.size-off {
		return nil, nil, fmt.Errorf("map %s: %d bytes at %d of %d: %w", p.name, n, off, p.size, ErrPagemap)
	}
	if n == 0 {
		return nil, func() {}, nil
	}
	if f, ok := p.pages.(*os.File); ok && off%int64(p.psize) == 0 {
		b, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, nil, fmt.Errorf("map %s: %w", p.name, err)
		}
		return b, func() { unix.Munmap(b) }, nil
	}
	b := make([]byte, n)
	if _, err := p.pages.ReadAt(b, off); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", p.name, err)
	}
	return b, func() {}, nil
}
