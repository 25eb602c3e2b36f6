package restore

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// A child is cloned from its parent once the parent's memory is made, and
// so is born with it, shared copy-on-write. It keeps what it may have
// shared with its parent before the dump: its private anonymous VMAs that
// lie within one of its parent's of the same kind (inherits). Of their
// pages, it keeps each whose contents are what its own image holds,
// still shared, and gets the others written, or dropped where its image
// has none: its memory is its image's, as if made afresh, but for the
// pages it shares.

// anonPrivate reports whether v is private anonymous memory, the heap and
// the stack included: what a child inherits from its parent copy-on-write.
func anonPrivate(v *vma.VmaEntry) bool {
	st := v.GetStatus() &^ (image.VMAAreaHeap | image.VMAAreaStack)
	return st == image.VMAAreaRegular|image.VMAAnonPrivate && v.GetFlags()&unix.MAP_TYPE == unix.MAP_PRIVATE
}

// inherits reports whether the child's VMA v is made by keeping the
// mapping it was born with: its parent's VMA p, which the restore made
// before the child was cloned, covers it and is of the same kind, with
// the same flags and, while the restore writes, protection (protect sets
// the child's own; nothing before it set madvise flags in the parent).
func inherits(v, p *vma.VmaEntry, writable func(*vma.VmaEntry) uint32) bool {
	return anonPrivate(v) && anonPrivate(p) && p.GetStart() <= v.GetStart() && v.GetEnd() <= p.GetEnd() &&
		v.GetStatus() == p.GetStatus() && v.GetFlags()&^unix.MAP_LOCKED == p.GetFlags()&^unix.MAP_LOCKED &&
		writable(v) == writable(p)
}

// findInherited sets the VMAs the process keeps from its parent, nil for
// the root, whose parent is not in the tree.
func (r *restorer) findInherited() {
	r.inherited, r.keep = nil, nil
	p := r.proc(int(r.c.task.GetPpid()))
	if p == nil {
		return
	}
	pv := p.c.mm.Vmas
	for _, v := range r.c.mm.Vmas {
		// The parent's VMAs are sorted and disjoint: the first that ends
		// after v starts is the only one that may cover it.
		i, _ := slices.BinarySearchFunc(pv, v.GetStart(), func(p *vma.VmaEntry, at uint64) int { return cmp.Compare(p.GetEnd(), at+1) })
		if i < len(pv) && inherits(v, pv[i], r.writableProt) {
			if r.inherited == nil {
				r.inherited = map[*vma.VmaEntry]bool{}
			}
			r.inherited[v] = true
			r.keep = append(r.keep, vdso.Range{Start: v.GetStart(), End: v.GetEnd()})
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

// inheritedPages are the runs of pages the process was born with in
// [at.Start, at.End), from its open pagemap.
func inheritedPages(pagemap *os.File, at vdso.Range) ([]vdso.Range, error) {
	runs, err := proc.ReadPageRuns(pagemap, at.Start, at.End, proc.PresentOrSwapped)
	if err != nil {
		return nil, err
	}
	out := make([]vdso.Range, len(runs))
	for i, pr := range runs {
		out[i] = vdso.Range{Start: pr.Addr, End: pr.Addr + pr.Pages*pageSize}
	}
	return out, nil
}

// writeKept writes the part piece of run e that lies in memory the
// process kept from its parent: the pages it was born with are compared
// with the image and written only if they differ, so that those that do
// not stay shared; the others are written.
func (r *restorer) writeKept(pr *image.PageReader, pagemap *os.File, e image.PageEntry, piece vdso.Range) error {
	born, err := inheritedPages(pagemap, piece)
	if err != nil {
		return fmt.Errorf("read pagemap of %#x-%#x: %w", piece.Start, piece.End, err)
	}
	same, fresh := split(piece, born)
	for _, p := range fresh {
		if err := r.writeRange(pr, e, p, 0); err != nil {
			return err
		}
	}
	var buf []byte
	for _, p := range same {
		for addr := p.Start; addr < p.End; {
			n := min(writeChunk, p.End-addr)
			if uint64(len(buf)) < n {
				buf = make([]byte, n)
			}
			if err := r.tr.ReadMem(addr, buf[:n]); err != nil {
				return err
			}
			data, release, err := pr.Map(e, int64(addr-e.Vaddr), int64(n))
			if err != nil {
				return err
			}
			err = r.tr.WriteMemVMBatch(changed(addr, buf[:n], data))
			release()
			if err != nil {
				return fmt.Errorf("write pages at %#x: %w", addr, err)
			}
			addr += n
		}
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

// dropUnwritten empties the pages the process was born with in the
// memory it kept that its image does not have (its own never touched, or
// dropped): they read as zeros again. written are the ranges of the image
// there, sorted.
func (r *restorer) dropUnwritten(pagemap *os.File, written []vdso.Range) error {
	for _, k := range r.keep {
		born, err := inheritedPages(pagemap, k)
		if err != nil {
			return fmt.Errorf("read pagemap of %#x-%#x: %w", k.Start, k.End, err)
		}
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
