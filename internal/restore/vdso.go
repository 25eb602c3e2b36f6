package restore

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// VDSOMode says how a restore reconciles the dumped vDSO with this
// kernel's.
type VDSOMode string

const (
	// VDSOAuto remaps when the vDSOs are interchangeable, else proxies.
	VDSOAuto VDSOMode = "auto"
	// VDSORemap refuses to restore unless the vDSOs are interchangeable.
	VDSORemap VDSOMode = "remap"
	// VDSOProxy always proxies, even between identical vDSOs.
	VDSOProxy VDSOMode = "proxy"
)

// taskSize is the end of user address space with 4-level page tables, the
// highest a process restored here can have used.
const taskSize = 0x7ffffffff000

// oldVDSO is the dumped vDSO: its layout from the vvar and vDSO VMAs, its
// code from the pages image.
func (c *checkpoint) oldVDSO() (*vdso.Snapshot, error) {
	var l vdso.Layout
	for v := range c.vmas.all() {
		switch st := v.status; {
		case st&image.VMAAreaVVAR != 0:
			l = append(l, vdso.Region{Kind: vdso.KindVVar, Start: v.start, End: v.end})
		case st&image.VMAAreaVDSO != 0:
			l = append(l, vdso.Region{Kind: vdso.KindVDSO, Start: v.start, End: v.end})
		}
	}
	if c.vdso == nil {
		return vdso.NewSnapshot(l, nil)
	}
	start, end := c.vdso.start, c.vdso.end
	code := make([]byte, end-start)
	pr, err := c.dir.OpenPages(uint32(c.pid))
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	covered := uint64(0)
	for _, e := range c.vdsoRuns {
		eEnd := e.Vaddr + e.NrPages*pageSize
		if eEnd <= start || e.Vaddr >= end {
			continue
		}
		from, to := max(e.Vaddr, start), min(eEnd, end)
		if _, err := pr.Data(e).ReadAt(code[from-start:to-start], int64(from-e.Vaddr)); err != nil {
			return nil, fmt.Errorf("read dumped vDSO: %w", err)
		}
		covered += to - from
	}
	if covered != end-start {
		return nil, imageErr("the dumped vDSO at %#x has %d of its %d bytes in the pages image", start, covered, end-start)
	}
	s, err := vdso.NewSnapshot(l, code)
	if err != nil {
		return nil, fmt.Errorf("%w: dumped vDSO: %w", ErrImage, err)
	}
	return s, nil
}

// placeVDSO gives the process the runtime vDSO at the dumped addresses
// (remap) or keeps the dumped code there, patched to call the runtime one
// (proxy). It runs before the VMAs are mapped, on an address space holding
// only the scratch area and the kernel's special mappings.
func (r *restorer) placeVDSO() error {
	old, err := r.c.oldVDSO()
	if err != nil {
		return err
	}
	rt, err := r.runtimeVDSO()
	if err != nil {
		return err
	}
	why := vdso.Differences(old, rt)
	switch {
	case r.opts.VDSO == VDSORemap && len(why) > 0:
		return fmt.Errorf("--vdso=remap, but the vDSOs differ: %s", strings.Join(why, "; "))
	case old.Image == nil && rt.Image == nil:
		r.log.Info("vDSO: neither the dump nor this kernel has one")
		return nil
	case old.Image == nil:
		// The process never had a vDSO: it must not get one at an address
		// where it expects something else.
		return r.unmapRuntime(rt)
	case len(why) == 0 && r.opts.VDSO != VDSOProxy:
		r.log.Info("vDSO: remap, the runtime vDSO matches the dumped one")
		r.stats.VDSO = vdso.ModeRemap
		return r.remapVDSO(old, rt)
	}
	if len(why) == 0 {
		r.log.Info("vDSO: proxy, forced by --vdso=proxy")
	} else {
		r.log.Info("vDSO: proxy, the vDSOs differ", "because", strings.Join(why, "; "))
	}
	r.stats.VDSO = vdso.ModeProxy
	return r.proxyVDSO(old, rt)
}

// runtimeVDSO is the layout of the process's vDSO mappings, with the code
// of this kernel's vDSO read from cryo's own: a child cloned from a
// restored parent whose vDSO is proxied has a copy of the parent's, whose
// ELF header the mark overwrites.
func (r *restorer) runtimeVDSO() (*vdso.Snapshot, error) {
	maps, err := proc.ReadMaps(r.pid)
	if err != nil {
		return nil, fmt.Errorf("read vDSO layout of pid %d: %w", r.pid, err)
	}
	l := vdso.LayoutFromMaps(maps)
	if _, ok := l.Find(vdso.KindVDSO); !ok {
		return vdso.NewSnapshot(l, nil)
	}
	own, err := vdso.ReadLive(0)
	if err != nil {
		return nil, err
	}
	rt, err := vdso.NewSnapshot(l, own.Bytes)
	if err != nil {
		return nil, fmt.Errorf("vDSO of pid %d: %w", r.pid, err)
	}
	return rt, nil
}

// unmapRuntime removes the runtime vDSO mappings.
func (r *restorer) unmapRuntime(rt *vdso.Snapshot) error {
	for _, reg := range rt.Layout {
		if err := r.sys(unix.SYS_MUNMAP, reg.Start, reg.Size()); err != nil {
			return fmt.Errorf("unmap runtime %s: %w", reg.Kind, err)
		}
	}
	return nil
}

// moveBlock moves the runtime mappings, one mremap each since mremap
// cannot span VMAs, so that the block starts at to; it returns the new
// layout.
func (r *restorer) moveBlock(rt vdso.Layout, to uint64) (vdso.Layout, error) {
	from, _ := rt.Span()
	moved := make(vdso.Layout, len(rt))
	for i, reg := range rt {
		dst := to + (reg.Start - from)
		if dst != reg.Start {
			if err := r.sys(unix.SYS_MREMAP, reg.Start, reg.Size(), reg.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, dst); err != nil {
				return nil, fmt.Errorf("move %s from %#x to %#x: %w", reg.Kind, reg.Start, dst, err)
			}
		}
		moved[i] = vdso.Region{Kind: reg.Kind, Start: dst, End: dst + reg.Size()}
	}
	return moved, nil
}

// usedRanges are the ranges a moved vDSO block must avoid: the image's
// VMAs, the scratch area, and the given layout's current place.
func (r *restorer) usedRanges(l vdso.Layout) []vdso.Range {
	used := append(r.dumpedRanges(), r.scratchRange())
	if start, end := l.Span(); end > start {
		used = append(used, vdso.Range{Start: start, End: end})
	}
	return used
}

func (r *restorer) findHole(l vdso.Layout, near uint64) (uint64, error) {
	start, end := l.Span()
	return vdso.FindHole(r.usedRanges(l), end-start, near, mmapMinAddr(), taskSize)
}

func (r *restorer) remapVDSO(old, rt *vdso.Snapshot) error {
	oldStart, oldEnd := old.Layout.Span()
	rtStart, rtEnd := rt.Layout.Span()
	l := rt.Layout
	if rtStart < oldEnd && oldStart < rtEnd && rtStart != oldStart {
		// The block overlaps where it must go: move it out of the way first.
		tmp, err := r.findHole(l, 0)
		if err != nil {
			return err
		}
		if l, err = r.moveBlock(l, tmp); err != nil {
			return err
		}
	}
	_, err := r.moveBlock(l, oldStart)
	return err
}

func (r *restorer) proxyVDSO(old, rt *vdso.Snapshot) error {
	oldVDSO := old.VDSOAddr()
	var rtVDSO, rtVVar uint64
	if rt.Image != nil {
		hole, err := r.findHole(rt.Layout, oldVDSO)
		if err != nil {
			return fmt.Errorf("place runtime vDSO: %w", err)
		}
		moved, err := r.moveBlock(rt.Layout, hole)
		if err != nil {
			return err
		}
		rt = &vdso.Snapshot{Layout: moved, Bytes: rt.Bytes, Image: rt.Image}
		rtVDSO = rt.VDSOAddr()
		rtVVar, _ = moved.Span()
		if reg, ok := moved.Find(vdso.KindVVar); ok {
			rtVVar = reg.Start
		}
	}
	plan, err := vdso.NewPlan(old, rt, rtVDSO, true)
	if err != nil {
		return err
	}
	for _, e := range plan.Entries {
		r.log.Debug("vDSO proxy", "function", e.Symbol.String(), "old", fmt.Sprintf("%#x", e.Offset),
			"new", fmt.Sprintf("%#x", e.Target.Offset), "patch", e.Kind.String())
	}

	// The dumped code, back at its address, patched.
	size := uint64(len(old.Bytes))
	if err := r.sys(unix.SYS_MMAP, oldVDSO, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uint64(0), 0); err != nil {
		return fmt.Errorf("map proxy vDSO at %#x: %w", oldVDSO, err)
	}
	code := append([]byte(nil), old.Bytes...)
	for _, p := range plan.Patches() {
		copy(code[p.Offset:], p.Code)
	}
	if err := r.tr.WriteMem(oldVDSO, code); err != nil {
		return fmt.Errorf("write proxy vDSO: %w", err)
	}
	if err := r.sys(unix.SYS_MPROTECT, oldVDSO, size, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return fmt.Errorf("protect proxy vDSO: %w", err)
	}
	// The old vvar range stays reserved and inaccessible: a path that the
	// patches missed faults instead of reading whatever lies there.
	var oldVVar uint64
	if reg, ok := old.Layout.Find(vdso.KindVVar); ok {
		oldVVar = reg.Start
		if err := r.sys(unix.SYS_MMAP, reg.Start, reg.Size(), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, ^uint64(0), 0); err != nil {
			return fmt.Errorf("reserve old vvar at %#x: %w", reg.Start, err)
		}
	}
	if rt.Image != nil {
		mark := vdso.Mark{VDSO: oldVDSO, VVar: oldVVar, RuntimeVVar: rtVVar}
		if err := r.tr.WriteMem(rtVDSO, mark.Encode()); err != nil {
			return fmt.Errorf("mark runtime vDSO: %w", err)
		}
	}
	r.log.Info("vDSO proxy in place", "old", fmt.Sprintf("%#x", oldVDSO), "runtime", fmt.Sprintf("%#x", rtVDSO), "patches", len(plan.Patches()))
	return nil
}

func mmapMinAddr() uint64 {
	b, err := os.ReadFile("/proc/sys/vm/mmap_min_addr")
	if err != nil {
		return 1 << 16
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 1 << 16
	}
	return max(v, pageSize)
}
