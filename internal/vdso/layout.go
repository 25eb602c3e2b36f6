package vdso

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cryo-cr/cryo/internal/proc"
)

// Kind names one of the kernel's special mappings that make up the vDSO.
type Kind int

const (
	// KindVVar is [vvar]: the time data pages the vDSO code reads.
	KindVVar Kind = iota
	// KindVVarVClock is [vvar_vclock] (Linux >= 6.13): the clocksource
	// pages that used to be part of [vvar].
	KindVVarVClock
	// KindVDSO is [vdso]: the code.
	KindVDSO
)

var kindNames = [...]string{KindVVar: "[vvar]", KindVVarVClock: "[vvar_vclock]", KindVDSO: "[vdso]"}

func (k Kind) String() string { return kindNames[k] }

// kindOf returns the kind of a maps path, if it is one of the vDSO's.
func kindOf(path string) (Kind, bool) {
	for k, n := range kindNames {
		if path == n {
			return Kind(k), true
		}
	}
	return 0, false
}

// Region is one vDSO-related mapping.
type Region struct {
	Kind       Kind
	Start, End uint64
}

// Size is the region's length in bytes.
func (r Region) Size() uint64 { return r.End - r.Start }

// Layout is the set of vDSO-related mappings of one process, in address
// order. Any subset may be present, including none (a kernel booted with
// vdso=0).
type Layout []Region

// LayoutFromMaps picks the vDSO-related mappings out of a process's maps.
func LayoutFromMaps(maps []proc.Mapping) Layout {
	var l Layout
	for _, m := range maps {
		if k, ok := kindOf(m.Path); ok {
			l = append(l, Region{Kind: k, Start: m.Start, End: m.End})
		}
	}
	return l
}

// Find returns the region of the given kind.
func (l Layout) Find(k Kind) (Region, bool) {
	for _, r := range l {
		if r.Kind == k {
			return r, true
		}
	}
	return Region{}, false
}

// Adjacent reports whether the regions follow each other without gaps.
func (l Layout) Adjacent() bool {
	for i := 1; i < len(l); i++ {
		if l[i-1].End != l[i].Start {
			return false
		}
	}
	return true
}

// VVarSize is the combined size of [vvar] and [vvar_vclock].
func (l Layout) VVarSize() uint64 {
	var n uint64
	for _, r := range l {
		if r.Kind != KindVDSO {
			n += r.Size()
		}
	}
	return n
}

// Span returns the range from the first region's start to the last one's
// end: the block that moves as a unit.
func (l Layout) Span() (start, end uint64) {
	if len(l) == 0 {
		return 0, 0
	}
	return l[0].Start, l[len(l)-1].End
}

// VVarFirst reports whether the vvar pages come before the vDSO code.
func (l Layout) VVarFirst() bool {
	return len(l) > 0 && l[0].Kind != KindVDSO
}

// Order is the kinds in address order, e.g. "[vvar] [vvar_vclock] [vdso]".
func (l Layout) Order() string {
	names := make([]string, len(l))
	for i, r := range l {
		names[i] = r.Kind.String()
	}
	return strings.Join(names, " ")
}

// Snapshot is a vDSO as found in one process: its layout, its code, and the
// code parsed. Bytes and Image are nil when there is no [vdso].
type Snapshot struct {
	Layout Layout
	Bytes  []byte
	Image  *Image
	// LayoutUnknown marks a raw vDSO image, read without the maps of a
	// process (a kernel's vdso64.so, or bytes saved from /proc/PID/mem):
	// its code is known, its Layout (empty) is not.
	LayoutUnknown bool
}

// NewRawSnapshot parses a vDSO image whose layout is unknown.
func NewRawSnapshot(b []byte) (*Snapshot, error) {
	im, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Bytes: b, Image: im, LayoutUnknown: true}, nil
}

// NewSnapshot parses vDSO bytes taken from a process with the given layout.
func NewSnapshot(l Layout, b []byte) (*Snapshot, error) {
	s := &Snapshot{Layout: l}
	r, ok := l.Find(KindVDSO)
	if !ok {
		if len(b) != 0 {
			return nil, fmt.Errorf("%w: %d vDSO bytes but no [vdso] in the layout", ErrFormat, len(b))
		}
		return s, nil
	}
	if uint64(len(b)) != r.Size() {
		return nil, fmt.Errorf("%w: %d vDSO bytes for a %d-byte [vdso]", ErrFormat, len(b), r.Size())
	}
	im, err := Parse(b)
	if err != nil {
		return nil, err
	}
	s.Bytes, s.Image = b, im
	return s, nil
}

// Block is the range of the block that moves as a unit (Layout.Span); a
// raw image is taken as its vDSO alone, at address 0.
func (s *Snapshot) Block() (start, end uint64) {
	if s.LayoutUnknown {
		return 0, alignUp(s.Image.Size)
	}
	return s.Layout.Span()
}

// VDSOAddr is where the vDSO code is mapped, 0 if it is not.
func (s *Snapshot) VDSOAddr() uint64 {
	r, _ := s.Layout.Find(KindVDSO)
	return r.Start
}

// ReadLive reads the vDSO layout and code of a running process; pid 0
// means the calling process.
func ReadLive(pid int) (*Snapshot, error) {
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return nil, fmt.Errorf("read vDSO layout of pid %d: %w", pid, err)
	}
	l := LayoutFromMaps(maps)
	var b []byte
	if r, ok := l.Find(KindVDSO); ok {
		if b, err = readMem(pid, r.Start, r.Size()); err != nil {
			return nil, fmt.Errorf("read vDSO of pid %d at %#x: %w", pid, r.Start, err)
		}
	}
	s, err := NewSnapshot(l, b)
	if err != nil {
		return nil, fmt.Errorf("parse vDSO of pid %d: %w", pid, err)
	}
	return s, nil
}

func readMem(pid int, addr, n uint64) ([]byte, error) {
	f, err := os.Open(proc.Path(pid, "mem"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return nil, err
	}
	return b, nil
}

// A saved snapshot is two files: NAME.so holds the vDSO bytes and NAME.maps
// the kernel's maps lines of the vDSO-related mappings, so that fixtures are
// exactly what the kernel showed. A raw image has no .maps.

// Load reads a snapshot saved as path (the .so file) and its .maps sidecar,
// or, when there is none, path as a raw image (NewRawSnapshot).
func Load(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load vDSO: %w", err)
	}
	mapsPath := strings.TrimSuffix(path, ".so") + ".maps"
	mb, err := os.ReadFile(mapsPath)
	if errors.Is(err, fs.ErrNotExist) {
		s, err := NewRawSnapshot(b)
		if err != nil {
			return nil, fmt.Errorf("load vDSO %s (no %s: a raw image): %w", path, filepath.Base(mapsPath), err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load vDSO layout: %w", err)
	}
	maps, err := proc.ParseMaps(mb)
	if err != nil {
		return nil, fmt.Errorf("load vDSO layout %s: %w", mapsPath, err)
	}
	s, err := NewSnapshot(LayoutFromMaps(maps), b)
	if err != nil {
		return nil, fmt.Errorf("load vDSO %s: %w", path, err)
	}
	return s, nil
}

// Save writes the snapshot as path (which should end in .so) and its .maps
// sidecar; a raw image gets none.
func (s *Snapshot) Save(path string) error {
	var maps strings.Builder
	for _, r := range s.Layout {
		fmt.Fprintf(&maps, "%x-%x %s 00000000 00:00 0 %s\n", r.Start, r.End, permsOf(r.Kind), r.Kind)
	}
	if err := os.WriteFile(path, s.Bytes, 0o644); err != nil {
		return fmt.Errorf("save vDSO: %w", err)
	}
	if s.LayoutUnknown {
		return nil
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".so")+".maps", []byte(maps.String()), 0o644); err != nil {
		return fmt.Errorf("save vDSO layout: %w", err)
	}
	return nil
}

func permsOf(k Kind) string {
	if k == KindVDSO {
		return "r-xp"
	}
	return "r--p"
}
