package vdso

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file    string
		class   elf.Class
		offsets map[string]uint64
	}{
		{"linux-6.18-amd64.so", elf.ELFCLASS64, map[string]uint64{
			"gettimeofday": 0x810, "time": 0xac0, "clock_gettime": 0xaf0,
			"clock_getres": 0xe80, "getcpu": 0xf00, "getrandom": 0xf40,
		}},
		{"linux-6.12-amd64.so", elf.ELFCLASS64, map[string]uint64{
			"gettimeofday": 0x8b0, "time": 0xbb0, "clock_gettime": 0xbe0,
			"clock_getres": 0xfb0, "getcpu": 0x1020, "getrandom": 0x1050,
			"sgx_enter_enclave": 0x1560,
		}},
		{"linux-6.1-amd64.so", elf.ELFCLASS64, map[string]uint64{
			"gettimeofday": 0x780, "time": 0x930, "clock_gettime": 0x960,
			"clock_getres": 0xbc0, "getcpu": 0xc20, "sgx_enter_enclave": 0xc50,
		}},
		{"linux-5.10-amd64.so", elf.ELFCLASS64, map[string]uint64{
			"gettimeofday": 0x720, "time": 0x8d0, "clock_gettime": 0x900,
			"clock_getres": 0xb70, "getcpu": 0xbd0,
		}},
		{"linux-6.18-i386.so", elf.ELFCLASS32, map[string]uint64{
			"vsyscall": 0x5e0, "sigreturn": 0x600, "rt_sigreturn": 0x610,
			"gettimeofday": 0x700, "time": 0xc20, "clock_gettime": 0xc70,
			"clock_gettime64": 0x1220, "clock_getres": 0x1830, "getcpu": 0x18d0,
		}},
		{"linux-5.10-i386.so", elf.ELFCLASS32, map[string]uint64{
			"vsyscall": 0x550, "sigreturn": 0x570, "rt_sigreturn": 0x580,
			"gettimeofday": 0x730, "time": 0x9a0, "clock_gettime": 0x9e0,
			"clock_gettime64": 0xd70, "clock_getres": 0x1130,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			im, err := Parse(readFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if im.Class != tt.class {
				t.Errorf("class %v, want %v", im.Class, tt.class)
			}
			got := map[string]uint64{}
			names := map[string]int{}
			for _, s := range im.Symbols {
				got[baseName(s.Name)] = s.Offset
				names[baseName(s.Name)]++
				if s.Size == 0 || !strings.HasPrefix(s.Version, "LINUX_2.") {
					t.Errorf("%s: size %d, version %q", s, s.Size, s.Version)
				}
			}
			if d := cmp.Diff(tt.offsets, got); d != "" {
				t.Errorf("offsets (-want +got):\n%s", d)
			}
			// x86_64 exports each time function under its __vdso_ name
			// and a weak alias.
			for n, count := range names {
				if tt.class == elf.ELFCLASS64 && n != "sgx_enter_enclave" && count != 2 {
					t.Errorf("%s exported %d times, want 2", n, count)
				}
			}
		})
	}
}

// corruptions are damaged copies of a real vDSO, each of which must be
// refused with ErrFormat.
var corruptions = []struct {
	name   string
	damage func(b []byte) []byte
}{
	{"empty", func(b []byte) []byte { return nil }},
	{"truncated header", func(b []byte) []byte { return b[:40] }},
	{"truncated half", func(b []byte) []byte { return b[:len(b)/2] }},
	{"bad magic", func(b []byte) []byte { b[1] = 'X'; return b }},
	{"big endian", func(b []byte) []byte { b[elf.EI_DATA] = byte(elf.ELFDATA2MSB); return b }},
	{"class none", func(b []byte) []byte { b[elf.EI_CLASS] = 0; return b }},
	{"freebsd abi", func(b []byte) []byte { b[elf.EI_OSABI] = byte(elf.ELFOSABI_FREEBSD); return b }},
	{"executable", func(b []byte) []byte { b[0x10] = byte(elf.ET_EXEC); return b }},
	{"program headers outside", func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[0x20:], uint64(len(b))-8)
		return b
	}},
	{"no program headers", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[0x38:], 0); return b }},
	{"symtab outside image", func(b []byte) []byte { return setDyn(b, elf.DT_SYMTAB, 1<<40) }},
	{"strtab outside image", func(b []byte) []byte { return setDyn(b, elf.DT_STRTAB, uint64(len(b))-4) }},
	{"strsz huge", func(b []byte) []byte { return setDyn(b, elf.DT_STRSZ, 1<<32) }},
	{"symbol count huge", func(b []byte) []byte { return setDyn(b, elf.DT_HASH, uint64(len(b))+64) }},
	{"versym outside", func(b []byte) []byte { return setDyn(b, elf.DT_VERSYM, uint64(len(b))-2) }},
	{"bad syment", func(b []byte) []byte { return setDyn(b, elf.DT_SYMENT, 16) }},
	{"no symtab", func(b []byte) []byte { return setDyn(b, elf.DT_SYMTAB, 0) }},
}

// setDyn rewrites the value of a 64-bit image's dynamic tag, found through
// the section-less path a loader uses.
func setDyn(b []byte, tag elf.DynTag, val uint64) []byte {
	phoff := binary.LittleEndian.Uint64(b[0x20:])
	phnum := int(binary.LittleEndian.Uint16(b[0x38:]))
	for i := range phnum {
		ph := b[phoff+uint64(i)*56:]
		if elf.ProgType(binary.LittleEndian.Uint32(ph)) != elf.PT_DYNAMIC {
			continue
		}
		off, size := binary.LittleEndian.Uint64(ph[8:]), binary.LittleEndian.Uint64(ph[32:])
		for d := off; d+16 <= off+size; d += 16 {
			if elf.DynTag(binary.LittleEndian.Uint64(b[d:])) == tag {
				binary.LittleEndian.PutUint64(b[d+8:], val)
				return b
			}
		}
	}
	panic("tag not found: " + tag.String())
}

func TestParseCorrupt(t *testing.T) {
	good := readFixture(t, "linux-6.18-amd64.so")
	for _, tt := range corruptions {
		t.Run(tt.name, func(t *testing.T) {
			im, err := Parse(tt.damage(append([]byte(nil), good...)))
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse = %v, %v; want an error wrapping ErrFormat", im, err)
			}
			t.Log(err)
		})
	}
}

// TestParseEveryTruncation cuts a real vDSO at every length: a cut into
// what a loader reads must fail, and a cut that only loses the section
// headers (which a loader ignores) must still find every symbol.
func TestParseEveryTruncation(t *testing.T) {
	good := readFixture(t, "linux-6.18-amd64.so")
	full, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	parsed := 0
	for n := range len(good) {
		im, err := Parse(good[:n])
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse of the first %d bytes: err = %v, want ErrFormat", n, err)
			}
			continue
		}
		parsed++
		if d := cmp.Diff(full.Symbols, im.Symbols); d != "" {
			t.Fatalf("Parse of the first %d bytes: symbols (-full +cut):\n%s", n, d)
		}
	}
	if parsed > len(good)/2 {
		t.Errorf("%d of %d truncations parsed; the loaded segment should be most of the image", parsed, len(good))
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.so")
	for _, s := range seeds {
		b := readFixture(f, filepath.Base(s))
		f.Add(b)
		if elf.Class(b[elf.EI_CLASS]) != elf.ELFCLASS64 {
			continue // the corruptions know the ELF64 layout only
		}
		for _, c := range corruptions {
			f.Add(c.damage(append([]byte(nil), b...)))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		for _, s := range im.Symbols {
			if s.Offset >= im.Size {
				t.Fatalf("symbol %s at %#x beyond %d-byte image", s, s.Offset, im.Size)
			}
		}
	})
}
