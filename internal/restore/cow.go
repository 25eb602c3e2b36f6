package restore

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// A child is cloned from its parent once the parent's memory is made, and
// so is born with it, shared copy-on-write. It keeps what it may have
// shared with its parent before the dump: its private VMAs, anonymous or
// mapping a file, that lie within one of its parent's of the same kind
// (inherits). Of their pages, it keeps each whose contents in its image
// are the same as in its parent's, still shared, and gets the others
// written, or dropped where its image has none (a file's page reads from
// the file again): its memory is its image's, as if made afresh, but for
// the pages it shares. The images are compared, not the memory: reading
// it would cost more, and process_vm_readv would copy the pages it reads
// (it pins them).

// cowPrivate reports whether v is private memory that a child inherits
// from its parent copy-on-write: anonymous, the heap and the stack
// included, or a file's private mapping; not huge pages, whose writes by
// the parent may take them from the child (it holds no reservation).
func cowPrivate(v *vma) bool {
	st := v.status &^ (image.VMAAreaHeap | image.VMAAreaStack)
	return (st == image.VMAAreaRegular|image.VMAAnonPrivate || st == image.VMAAreaRegular|image.VMAFilePrivate) &&
		v.flags&unix.MAP_TYPE == unix.MAP_PRIVATE && v.flags&unix.MAP_HUGETLB == 0
}

// inherits reports whether the child's VMA v is made by keeping the
// mapping it was born with: its parent's VMA p, which the restore made
// before the child was cloned, covers it and is of the same kind, with
// the same flags and, while the restore writes, protection (protect sets
// the child's own; nothing before it set madvise flags in the parent), and
// maps the same file at the same offsets. writable and parentWritable
// give the protections the child's and the parent's VMAs are made with.
func inherits(v, p *vma, writable, parentWritable func(*vma) uint32) bool {
	same := cowPrivate(v) && p.start <= v.start && v.end <= p.end &&
		v.status == p.status && v.flags&^unix.MAP_LOCKED == p.flags&^unix.MAP_LOCKED &&
		writable(v) == parentWritable(p)
	if !same || v.status&image.VMAFilePrivate == 0 {
		return same
	}
	return v.shmid == p.shmid && v.pgoff-p.pgoff == v.start-p.start
}

// findInherited sets the VMAs the process keeps from its parent, nil for
// the root, whose parent is not in the tree.
func (r *restorer) findInherited() {
	r.inherited, r.keep = nil, nil
	p := r.proc(int(r.c.task.GetPpid()))
	if p == nil {
		return
	}
	pv := p.c.vmas.reader()
	for v := range r.c.vmas.all() {
		// The parent's VMAs are sorted and disjoint: the first that ends
		// after v starts is the only one that may cover it.
		if pv.seek(v.start) && inherits(v, &pv.v, r.writableProt, p.writableProt) {
			if r.inherited == nil {
				r.inherited = map[uint64]bool{}
			}
			r.inherited[v.start] = true
			r.keep = append(r.keep, vdso.Range{Start: v.start, End: v.end})
		}
	}
	r.log.Info("memory kept from the parent", "pid", r.pid, "vmas", len(r.keep))
}

// split returns the parts of a inside and outside by, which is sorted and
// disjoint.
func split(a vdso.Range, by []vdso.Range) (in, out []vdso.Range) {
	i, _ := slices.BinarySearchFunc(by, a.Start, func(b vdso.Range, at uint64) int { return cmp.Compare(b.End, at+1) })
	at := a.Start
	for ; i < len(by) && by[i].Start < a.End; i++ {
		s, e := max(by[i].Start, a.Start), min(by[i].End, a.End)
		if s >= e {
			continue
		}
		if s > at {
			out = append(out, vdso.Range{Start: at, End: s})
		}
		in = append(in, vdso.Range{Start: s, End: e})
		at = e
	}
	if at < a.End {
		out = append(out, vdso.Range{Start: at, End: a.End})
	}
	return in, out
}

// parentPages is the image of the parent a process was cloned from: its
// memory then, where the child's kept memory comes from. The parent's
// pages step had made the parent's private memory exactly its image,
// zeros where the image has no pages, and nothing writes it before its
// children are cloned.
type parentPages struct {
	pr      *image.PageReader
	entries []image.PageEntry
	ranges  []vdso.Range // of entries, sorted
}

// openParentPages opens the image of the process's parent.
func (r *restorer) openParentPages() (*parentPages, error) {
	p := r.proc(int(r.c.task.GetPpid()))
	pr, err := p.c.dir.OpenPages(uint32(p.pid))
	if err != nil {
		return nil, err
	}
	pp := &parentPages{pr: pr}
	// Its runs, read again: the loaded checkpoint does not hold them.
	err = eachRun(pr, func(e image.PageEntry) error {
		pp.entries = append(pp.entries, e)
		pp.ranges = append(pp.ranges, vdso.Range{Start: e.Vaddr, End: e.Vaddr + e.NrPages*pageSize})
		return nil
	})
	if err != nil {
		pr.Close()
		return nil, err
	}
	return pp, nil
}

// writeKept writes pieces of memory the process kept from its parent,
// each within a run of the parent's: a page is written only if it
// differs from the parent's, which the process was born with, so that
// the others stay shared. done is told how many bytes each piece moved,
// written or not.
func (r *restorer) writeKept(pr *image.PageReader, parent *parentPages, pieces []piece, done func(n uint64)) error {
	for _, p := range pieces {
		i, _ := slices.BinarySearchFunc(parent.ranges, p.r.Start, func(b vdso.Range, at uint64) int { return cmp.Compare(b.End, at+1) })
		pe := parent.entries[i]
		for addr := p.r.Start; addr < p.r.End; {
			// Read into buffers the restore reuses: mapping the files
			// would cost a fault per page.
			n := min(writeChunk, p.r.End-addr)
			if r.compare[0] == nil {
				r.compare = [2][]byte{make([]byte, writeChunk), make([]byte, writeChunk)}
			}
			want, have := r.compare[0][:n], r.compare[1][:n]
			if _, err := pr.Data(p.e).ReadAt(want, int64(addr-p.e.Vaddr)); err != nil {
				return fmt.Errorf("read pages at %#x: %w", addr, err)
			}
			if _, err := parent.pr.Data(pe).ReadAt(have, int64(addr-pe.Vaddr)); err != nil {
				return fmt.Errorf("read the parent's pages at %#x: %w", addr, err)
			}
			if err := r.tr.WriteMemVMBatch(changed(addr, have, want)); err != nil {
				return fmt.Errorf("write pages at %#x: %w", addr, err)
			}
			addr += n
		}
		done(p.r.End - p.r.Start)
	}
	return nil
}

// changed returns the runs of pages of want, to go at addr, that differ
// from have.
func changed(addr uint64, have, want []byte) []ptrace.Segment {
	var segs []ptrace.Segment
	for off := 0; off < len(want); off += pageSize {
		if bytes.Equal(have[off:off+pageSize], want[off:off+pageSize]) {
			continue
		}
		if n := len(segs); n > 0 && segs[n-1].Addr+uint64(len(segs[n-1].Data)) == addr+uint64(off) {
			segs[n-1].Data = want[off-len(segs[n-1].Data) : off+pageSize]
			continue
		}
		segs = append(segs, ptrace.Segment{Addr: addr + uint64(off), Data: want[off : off+pageSize]})
	}
	return segs
}

// dropUnwritten empties the pages of the memory the process kept that
// its parent had and its own image has not (it never touched them, or
// dropped them): they read as zeros again. written are the ranges of the
// image there, sorted.
func (r *restorer) dropUnwritten(parent *parentPages, written []vdso.Range) error {
	for _, k := range r.keep {
		born, _ := split(k, parent.ranges)
		for _, b := range born {
			_, extra := split(b, written)
			for _, x := range extra {
				if err := r.sys(unix.SYS_MADVISE, x.Start, x.End-x.Start, unix.MADV_DONTNEED); err != nil {
					return fmt.Errorf("drop inherited pages %#x-%#x: %w", x.Start, x.End, err)
				}
			}
		}
	}
	return nil
}
