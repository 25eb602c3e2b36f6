package vdso

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/arch/x86/x86asm"
)

func loadFixture(t *testing.T, name string) *Snapshot {
	t.Helper()
	return mustLoad(t, "testdata/"+name+".so")
}

// synthetic builds a snapshot of an x86_64 vDSO with the given functions
// (all at version V), its [vdso] at base after a 0x4000-byte [vvar].
func synthetic(base uint64, size uint64, syms ...Symbol) *Snapshot {
	for i := range syms {
		syms[i].Version = "V"
	}
	return &Snapshot{
		Layout: Layout{{KindVVar, base - 0x4000, base}, {KindVDSO, base, base + size}},
		Image:  &Image{Class: elf.ELFCLASS64, Machine: elf.EM_X86_64, Size: size, Symbols: syms},
	}
}

func TestPlanRemapSameVDSO(t *testing.T) {
	old := loadFixture(t, "linux-6.18-amd64")
	rt, err := ReadLive(0)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture and this process's vDSO are the same only on the
	// fixture's kernel; the fixture against itself is remap everywhere.
	p, err := NewPlan(old, old, old.VDSOAddr(), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeRemap || len(p.Reasons) != 0 || len(p.Entries) != len(old.Image.Symbols) {
		t.Fatalf("plan %+v, want remap of %d functions", p, len(old.Image.Symbols))
	}
	if len(p.Patches()) != 0 {
		t.Errorf("remap plan has patches %v", p.Patches())
	}
	self, err := NewPlan(rt, rt, rt.VDSOAddr(), false)
	if err != nil || self.Mode != ModeRemap {
		t.Fatalf("live vDSO against itself: %v, %v; want remap", self, err)
	}
}

func TestPlanForcedProxy(t *testing.T) {
	old := loadFixture(t, "linux-6.18-amd64")
	rtBase := old.VDSOAddr() + 0x100000
	p, err := NewPlan(old, old, rtBase, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeProxy || len(p.Reasons) != 0 {
		t.Fatalf("mode %v reasons %q, want proxy without reasons", p.Mode, p.Reasons)
	}
	// One patch per function address, each a jump to the same function
	// in the runtime copy.
	if got := len(p.Patches()); got != 6 {
		t.Errorf("%d patches, want 6", got)
	}
	for _, e := range p.Entries {
		if e.Kind != TrampRel32 || e.Missing {
			t.Errorf("%s: %v missing=%v, want jmp-rel32", e.Symbol, e.Kind, e.Missing)
			continue
		}
		in, err := x86asm.Decode(e.Code, 64)
		if err != nil || in.Op != x86asm.JMP {
			t.Fatalf("%s: decode % x: %v", e.Symbol, e.Code, err)
		}
		if got := old.VDSOAddr() + e.Offset + 5 + uint64(int64(in.Args[0].(x86asm.Rel))); got != rtBase+e.Offset {
			t.Errorf("%s jumps to %#x, want %#x", e.Symbol, got, rtBase+e.Offset)
		}
	}
}

func TestPlanProxy(t *testing.T) {
	const base = 0x7f0000002000
	tests := []struct {
		name    string
		old, rt *Snapshot
		rtVDSO  uint64
		want    map[string]TrampKind // by symbol name
		wantErr string
	}{
		{
			name: "moved function, near",
			old:  synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}, Symbol{Name: "__vdso_getcpu", Offset: 0x900, Size: 40}),
			rt:   synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0xa00, Size: 40}, Symbol{Name: "__vdso_getcpu", Offset: 0x900, Size: 40}),
			want: map[string]TrampKind{"__vdso_time": TrampRel32, "__vdso_getcpu": TrampRel32},
		},
		{
			name:   "far runtime block",
			old:    synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}),
			rt:     synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0xa00, Size: 40}),
			rtVDSO: 0x1000,
			want:   map[string]TrampKind{"__vdso_time": TrampAbs64},
		},
		{
			name: "missing function falls back to the syscall",
			old:  synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}, Symbol{Name: "__vdso_getrandom", Offset: 0x900, Size: 40}),
			rt:   synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}),
			want: map[string]TrampKind{"__vdso_time": TrampRel32, "__vdso_getrandom": TrampSyscall},
		},
		{
			name: "no runtime vDSO at all",
			old:  synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}, Symbol{Name: "clock_gettime", Offset: 0x900, Size: 40}),
			rt:   &Snapshot{},
			want: map[string]TrampKind{"__vdso_time": TrampSyscall, "clock_gettime": TrampSyscall},
		},
		{
			name:    "long jump does not fit",
			old:     synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 8}, Symbol{Name: "__vdso_getcpu", Offset: 0x808, Size: 40}),
			rt:      synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0xa00, Size: 40}, Symbol{Name: "__vdso_getcpu", Offset: 0x900, Size: 40}),
			rtVDSO:  0x1000,
			wantErr: "__vdso_time@V at 0x800: trampoline does not fit: 16-byte movabs-jmp, 8 bytes before the next symbol",
		},
		{
			name:    "no room before the end of the image",
			old:     synthetic(base, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x1ffd, Size: 3}),
			rt:      synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x900, Size: 40}),
			wantErr: "trampoline does not fit: 5-byte jmp-rel32, 3 bytes",
		},
		{
			name: "missing function without a syscall",
			old:  synthetic(base, 0x2000, Symbol{Name: "__vdso_sgx_enter_enclave", Offset: 0x800, Size: 40}),
			rt:   synthetic(0x7f0010002000, 0x2000),
			want: map[string]TrampKind{"__vdso_sgx_enter_enclave": TrampENOSYS},
		},
		{
			name:    "dumped process without a vDSO",
			old:     &Snapshot{},
			rt:      synthetic(0x7f0010002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x900, Size: 40}),
			wantErr: "the dumped process had no vDSO",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rtVDSO := tt.rtVDSO
			if rtVDSO == 0 {
				rtVDSO = tt.rt.VDSOAddr()
			}
			p, err := NewPlan(tt.old, tt.rt, rtVDSO, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewPlan error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != ModeProxy || len(p.Reasons) == 0 {
				t.Fatalf("mode %v reasons %q, want proxy with reasons", p.Mode, p.Reasons)
			}
			got := map[string]TrampKind{}
			for _, e := range p.Entries {
				got[e.Name] = e.Kind
				if e.Missing != (e.Kind == TrampSyscall || e.Kind == TrampENOSYS) {
					t.Errorf("%s: missing=%v with kind %v", e.Symbol, e.Missing, e.Kind)
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("trampolines (-want +got):\n%s", d)
			}
		})
	}
}

func TestPlanNoVDSOEither(t *testing.T) {
	p, err := NewPlan(&Snapshot{}, &Snapshot{}, 0, false)
	if err != nil || p.Mode != ModeRemap || len(p.Entries) != 0 {
		t.Fatalf("NewPlan = %+v, %v; want an empty remap", p, err)
	}
	if _, err := NewPlan(&Snapshot{}, &Snapshot{}, 0, true); err == nil {
		t.Fatal("forced proxy without a dumped vDSO: no error")
	}
}

func TestDifferences(t *testing.T) {
	a := synthetic(0x7f0000002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40})
	moved := synthetic(0x7f0000002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x880, Size: 40})
	bigger := synthetic(0x7f0000002000, 0x3000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40})
	extra := synthetic(0x7f0000002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40}, Symbol{Name: "__vdso_getrandom", Offset: 0x900, Size: 40})
	vclock := synthetic(0x7f0000002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40})
	vclock.Layout = Layout{{KindVVar, 0x7efffffec000, 0x7effffff0000}, {KindVVarVClock, 0x7effffff0000, 0x7f0000002000}, vclock.Layout[1]}
	vvarAfter := synthetic(0x7f0000002000, 0x2000, Symbol{Name: "__vdso_time", Offset: 0x800, Size: 40})
	vvarAfter.Layout = Layout{{KindVDSO, 0x7f0000002000, 0x7f0000004000}, {KindVVar, 0x7f0000004000, 0x7f0000008000}}
	tests := []struct {
		name string
		rt   *Snapshot
		want []string
	}{
		{"same", a, nil},
		{"function moved", moved, []string{"__vdso_time@V at 0x800, runtime at 0x880"}},
		{"bigger", bigger, []string{"vDSO size 0x2000, runtime 0x3000"}},
		{"new function", extra, []string{"__vdso_getrandom@V only in runtime vDSO"}},
		{"vvar split", vclock, []string{"vvar size 0x4000, runtime 0x16000"}},
		{"vvar after", vvarAfter, []string{`layout "[vvar] [vdso]", runtime "[vdso] [vvar]"`}},
		{"no vDSO", &Snapshot{}, []string{"this kernel maps no vDSO"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, Differences(a, tt.rt)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestNewSnapshotRejectsMismatch(t *testing.T) {
	s := loadFixture(t, "linux-6.18-amd64")
	if _, err := NewSnapshot(s.Layout, s.Bytes[:4096]); !errors.Is(err, ErrFormat) {
		t.Errorf("half a vDSO for the layout: err = %v, want ErrFormat", err)
	}
	if _, err := NewSnapshot(nil, s.Bytes); !errors.Is(err, ErrFormat) {
		t.Errorf("bytes without a [vdso]: err = %v, want ErrFormat", err)
	}
}

// TestPlanAcrossKernels plans restores between the real vDSOs of the
// kernels in testdata, placing the runtime block 1 MiB above the old one.
func TestPlanAcrossKernels(t *testing.T) {
	kernels := []string{"5.10", "6.1", "6.12", "6.18"}
	for _, from := range kernels {
		for _, to := range kernels {
			t.Run(from+"->"+to, func(t *testing.T) {
				old, rt := loadFixture(t, "linux-"+from+"-amd64"), loadFixture(t, "linux-"+to+"-amd64")
				p, err := NewPlan(old, rt, old.VDSOAddr()+1<<20, false)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]Mode{true: ModeRemap, false: ModeProxy}[from == to]; p.Mode != want {
					t.Fatalf("mode %v, want %v (reasons %q)", p.Mode, want, p.Reasons)
				}
				if len(p.Entries) != len(old.Image.Symbols) {
					t.Errorf("%d entries for %d functions", len(p.Entries), len(old.Image.Symbols))
				}
				for _, e := range p.Entries {
					_, inRT := rt.Image.Lookup(e.Name, e.Version)
					switch {
					case p.Mode == ModeRemap && e.Kind != TrampNone:
						t.Errorf("%s: %v in a remap", e.Symbol, e.Kind)
					case p.Mode == ModeProxy && inRT && e.Kind != TrampRel32:
						t.Errorf("%s: %v, want jmp-rel32", e.Symbol, e.Kind)
					case p.Mode == ModeProxy && !inRT && baseName(e.Name) == "getrandom":
						if e.Kind != TrampSyscall {
							t.Errorf("%s: %v, want syscall", e.Symbol, e.Kind)
						}
					case p.Mode == ModeProxy && !inRT && e.Kind != TrampENOSYS:
						t.Errorf("%s: %v, want enosys", e.Symbol, e.Kind)
					}
				}
			})
		}
	}
}

// TestPlan618To61 is the case the proxy exists for: a process from this
// kernel restored on Debian 12's, which lacks getrandom.
func TestPlan618To61(t *testing.T) {
	old, rt := loadFixture(t, "linux-6.18-amd64"), loadFixture(t, "linux-6.1-amd64")
	p, err := NewPlan(old, rt, rt.VDSOAddr(), false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range p.Entries {
		got[e.Name] = fmt.Sprintf("%#x->%#x %v", e.Offset, e.Target.Offset, e.Kind)
		if e.Missing {
			got[e.Name] = fmt.Sprintf("%#x %v", e.Offset, e.Kind)
		}
	}
	kind := TrampRel32
	if _, ok := rel32(old.VDSOAddr(), rt.VDSOAddr()); !ok {
		kind = TrampAbs64
	}
	want := map[string]string{}
	for _, f := range []struct {
		name     string
		old, new uint64
	}{{"gettimeofday", 0x810, 0x780}, {"time", 0xac0, 0x930}, {"clock_gettime", 0xaf0, 0x960}, {"clock_getres", 0xe80, 0xbc0}, {"getcpu", 0xf00, 0xc20}} {
		want[f.name] = fmt.Sprintf("%#x->%#x %v", f.old, f.new, kind)
		want["__vdso_"+f.name] = want[f.name]
	}
	want["getrandom"], want["__vdso_getrandom"] = "0xf40 syscall", "0xf40 syscall"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
}

// rawCopy writes a fixture's vDSO bytes, cut to n bytes (0: all), alone in
// a directory: a raw image without its .maps.
func rawCopy(t *testing.T, name string, n int) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".so")
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		b = b[:n]
	}
	path := filepath.Join(t.TempDir(), name+".so")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRawImage loads vDSOs without their .maps: the bytes a process maps
// and, cut after the section headers, what a kernel build leaves in
// vdso64.so before padding it to whole pages.
func TestRawImage(t *testing.T) {
	full := loadFixture(t, "linux-6.18-amd64")
	f, err := elf.NewFile(bytes.NewReader(full.Bytes))
	if err != nil {
		t.Fatal(err)
	}
	shEnd := int(binary.LittleEndian.Uint64(full.Bytes[0x28:])) + len(f.Sections)*64
	if shEnd >= len(full.Bytes) {
		t.Fatalf("section headers end at %d of %d bytes: nothing to cut", shEnd, len(full.Bytes))
	}
	for _, tt := range []struct {
		name string
		path string
	}{
		{"as mapped", rawCopy(t, "linux-6.18-amd64", 0)},
		{"as built", rawCopy(t, "linux-6.18-amd64", shEnd)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if !raw.LayoutUnknown || len(raw.Layout) != 0 {
				t.Fatalf("layout %v (unknown %v), want unknown", raw.Layout, raw.LayoutUnknown)
			}
			if d := cmp.Diff(full.Image.Symbols, raw.Image.Symbols); d != "" {
				t.Errorf("symbols (-with maps +raw):\n%s", d)
			}
			// Against the same vDSO with any layout: remap, saying what
			// it could not compare.
			moved := *full
			moved.Layout = loadFixture(t, "linux-6.1-amd64").Layout
			if why := Differences(full, &moved); len(why) == 0 {
				t.Fatal("a different [vvar] layout makes no difference")
			}
			for _, pair := range [][2]*Snapshot{{raw, &moved}, {&moved, raw}, {raw, raw}} {
				p, err := NewPlan(pair[0], pair[1], 0x7f0000000000, false)
				if err != nil {
					t.Fatal(err)
				}
				if p.Mode != ModeRemap || len(p.LayoutUnknown) == 0 || len(p.Entries) != len(full.Image.Symbols) {
					t.Errorf("plan %v (%v), layout unknown for %v; want remap saying the layout is unknown", p.Mode, p.Reasons, p.LayoutUnknown)
				}
			}
			// Saved again, it stays raw.
			path := filepath.Join(t.TempDir(), "again.so")
			if err := raw.Save(path); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "again.maps")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a raw image saved with a .maps: %v", err)
			}
		})
	}
	// Against another kernel's: the functions decide.
	p, err := NewPlan(loadFixture(t, "linux-6.18-amd64"), mustLoad(t, rawCopy(t, "linux-6.1-amd64", 0)), 0x7f0000000000, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeProxy || !slices.Equal(p.LayoutUnknown, []string{"runtime"}) {
		t.Errorf("6.18 -> raw 6.1: %v, layout unknown for %v; want proxy, runtime", p.Mode, p.LayoutUnknown)
	}
	if _, err := Load(rawCopy(t, "linux-6.18-amd64", 100)); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated raw image: %v, want ErrFormat", err)
	}
}

func mustLoad(t *testing.T, path string) *Snapshot {
	t.Helper()
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
