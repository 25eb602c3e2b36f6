package vdso

import (
	"errors"
	"fmt"
	"slices"
)

// Mode is how a dumped vDSO is reconciled with the runtime one.
type Mode int

const (
	// ModeRemap moves the runtime mappings onto the dumped addresses: the
	// two vDSOs are interchangeable.
	ModeRemap Mode = iota
	// ModeProxy keeps the dumped vDSO's code in place and redirects each
	// of its functions to the runtime vDSO, moved elsewhere.
	ModeProxy
)

func (m Mode) String() string {
	if m == ModeRemap {
		return "remap"
	}
	return "proxy"
}

// Entry is the fate of one exported function of the dumped vDSO.
type Entry struct {
	Symbol
	// Target is the same function in the runtime vDSO; Missing means the
	// runtime has none, and Kind says which fallback stub replaces it.
	Target  Symbol
	Missing bool
	Kind    TrampKind
	// Code is the bytes a proxy writes at the old function, nil for remap.
	Code []byte
}

// Plan says what a restore does with a dumped vDSO.
type Plan struct {
	Mode Mode
	// Reasons says why a proxy is needed; empty for remap and for a forced
	// proxy between matching vDSOs.
	Reasons []string
	// LayoutUnknown names the vDSOs ("dumped", "runtime") that are raw
	// images: the plan then compares the functions and the image size,
	// not the [vvar] size and order, which a restore also needs equal.
	LayoutUnknown []string
	Entries       []Entry
}

// Differences lists why the runtime vDSO cannot simply replace the dumped
// one; none means remap will do.
func Differences(old, rt *Snapshot) []string {
	var why []string
	switch {
	case old.Image == nil && rt.Image == nil:
		return nil
	case old.Image == nil:
		return []string{"the dumped process had no vDSO"}
	case rt.Image == nil:
		return []string{"this kernel maps no vDSO"}
	}
	if old.Image.Machine != rt.Image.Machine || old.Image.Class != rt.Image.Class {
		why = append(why, fmt.Sprintf("vDSO machine %v/%v, runtime %v/%v",
			old.Image.Machine, old.Image.Class, rt.Image.Machine, rt.Image.Class))
	}
	// A kernel's vdso64.so is the mapped image before its padding to
	// whole pages.
	if alignUp(old.Image.Size) != alignUp(rt.Image.Size) {
		why = append(why, fmt.Sprintf("vDSO size %#x, runtime %#x", old.Image.Size, rt.Image.Size))
	}
	if !old.LayoutUnknown && !rt.LayoutUnknown {
		if o, n := old.Layout.VVarSize(), rt.Layout.VVarSize(); o != n {
			why = append(why, fmt.Sprintf("vvar size %#x, runtime %#x", o, n))
		}
		// [vvar_vclock] counts as part of the vvar: a dump records the two
		// as one range, and the vDSO code only sees their combined distance.
		if o, n := old.Layout.VVarFirst(), rt.Layout.VVarFirst(); o != n {
			why = append(why, fmt.Sprintf("layout %q, runtime %q", old.Layout.Order(), rt.Layout.Order()))
		}
	}
	for _, s := range old.Image.Symbols {
		t, ok := rt.Image.Lookup(s.Name, s.Version)
		switch {
		case !ok:
			why = append(why, fmt.Sprintf("%s missing from runtime vDSO", s))
		case t.Offset != s.Offset:
			why = append(why, fmt.Sprintf("%s at %#x, runtime at %#x", s, s.Offset, t.Offset))
		}
	}
	for _, t := range rt.Image.Symbols {
		if _, ok := old.Image.Lookup(t.Name, t.Version); !ok {
			why = append(why, fmt.Sprintf("%s only in runtime vDSO", t))
		}
	}
	return why
}

// NewPlan decides between remap and proxy for a dumped vDSO and the
// runtime one. rtVDSO is where the runtime vDSO code will be when the
// proxy's jumps run (it decides between short and long jumps); forceProxy
// builds a proxy even when remap would do.
func NewPlan(old, rt *Snapshot, rtVDSO uint64, forceProxy bool) (*Plan, error) {
	why := Differences(old, rt)
	var unknown []string
	for _, s := range []struct {
		name string
		snap *Snapshot
	}{{"dumped", old}, {"runtime", rt}} {
		if s.snap.LayoutUnknown {
			unknown = append(unknown, s.name)
		}
	}
	if len(why) == 0 && !forceProxy {
		p := &Plan{Mode: ModeRemap, LayoutUnknown: unknown}
		if old.Image != nil {
			for _, s := range old.Image.Symbols {
				t, _ := rt.Image.Lookup(s.Name, s.Version)
				p.Entries = append(p.Entries, Entry{Symbol: s, Target: t})
			}
		}
		return p, nil
	}
	if old.Image == nil {
		return nil, errors.New("proxy vDSO: the dumped process had no vDSO")
	}
	p := &Plan{Mode: ModeProxy, Reasons: why, LayoutUnknown: unknown}
	oldBase := old.VDSOAddr()
	for i, s := range old.Image.Symbols {
		e := Entry{Symbol: s}
		var t Symbol
		var ok bool
		if rt.Image != nil {
			t, ok = rt.Image.Lookup(s.Name, s.Version)
		}
		var err error
		if ok {
			e.Target = t
			e.Kind, e.Code, err = jump(old.Image.Machine, oldBase+s.Offset, rtVDSO+t.Offset)
		} else {
			e.Missing = true
			e.Kind, e.Code, err = fallbackStub(old.Image.Machine, s.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy vDSO function %s: %w", s, err)
		}
		if room := roomAt(old.Image, i); uint64(len(e.Code)) > room {
			return nil, fmt.Errorf("proxy vDSO function %s at %#x: %w: %d-byte %v, %d bytes before the next symbol",
				s, s.Offset, ErrNoFit, len(e.Code), e.Kind, room)
		}
		for _, prev := range p.Entries {
			if prev.Offset == e.Offset && !slices.Equal(prev.Code, e.Code) {
				return nil, fmt.Errorf("proxy vDSO function %s: alias %s at the same address goes elsewhere", s, prev.Symbol)
			}
		}
		p.Entries = append(p.Entries, e)
	}
	return p, nil
}

// roomAt is how many bytes a patch may write at symbol i: up to the next
// symbol at a higher offset, or the end of the image.
func roomAt(im *Image, i int) uint64 {
	off := im.Symbols[i].Offset
	for _, s := range im.Symbols[i+1:] {
		if s.Offset > off {
			return s.Offset - off
		}
	}
	return im.Size - off
}

// Patch is bytes to write at an offset of the old vDSO.
type Patch struct {
	Offset uint64
	Code   []byte
}

// Patches returns the writes a proxy makes, one per distinct function
// address (aliases such as time and __vdso_time share one).
func (p *Plan) Patches() []Patch {
	var ps []Patch
	for _, e := range p.Entries {
		if e.Code == nil {
			continue
		}
		if i := slices.IndexFunc(ps, func(q Patch) bool { return q.Offset == e.Offset }); i >= 0 {
			continue
		}
		ps = append(ps, Patch{Offset: e.Offset, Code: e.Code})
	}
	return ps
}
