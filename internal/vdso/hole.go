package vdso

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// Range is a half-open address range [Start, End).
type Range struct{ Start, End uint64 }

// pageSize is the page size of the processes cryo handles.
const pageSize = kernel.PageSize

// FindHole returns the page-aligned start of a free size-byte block within
// [lo, hi) that overlaps none of used, as near to the address near as
// possible: a proxy's runtime vDSO placed near the old one is reached by
// 5-byte jumps.
func FindHole(used []Range, size, near, lo, hi uint64) (uint64, error) {
	size = alignUp(size)
	lo, hi = alignUp(lo), hi&^(pageSize-1)
	sorted := slices.Clone(used)
	slices.SortFunc(sorted, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	best, bestDist, found := uint64(0), uint64(0), false
	try := func(gapStart, gapEnd uint64) {
		gapStart, gapEnd = max(alignUp(gapStart), lo), min(gapEnd&^(pageSize-1), hi)
		if gapEnd <= gapStart || gapEnd-gapStart < size {
			return
		}
		at := min(max(near&^(pageSize-1), gapStart), gapEnd-size)
		d := max(at, near) - min(at, near)
		if !found || d < bestDist {
			best, bestDist, found = at, d, true
		}
	}
	prevEnd := uint64(0)
	for _, r := range sorted {
		if r.Start > prevEnd {
			try(prevEnd, r.Start)
		}
		prevEnd = max(prevEnd, r.End)
	}
	if prevEnd < hi {
		try(prevEnd, hi)
	}
	if !found {
		return 0, fmt.Errorf("find %#x bytes near %#x in [%#x, %#x): %w", size, near, lo, hi, ErrNoHole)
	}
	return best, nil
}

func alignUp(x uint64) uint64 { return (x + pageSize - 1) &^ (pageSize - 1) }
