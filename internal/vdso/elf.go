package vdso

import (
	"cmp"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Symbol is one exported function of a vDSO.
type Symbol struct {
	Name string
	// Version is the symbol's version (e.g. "LINUX_2.6"), empty if the
	// image has no version information for it.
	Version string
	// Offset is the symbol's distance from the vDSO's load base.
	Offset uint64
	Size   uint64
}

// String formats the symbol as name@version.
func (s Symbol) String() string {
	if s.Version == "" {
		return s.Name
	}
	return s.Name + "@" + s.Version
}

// Image is a parsed vDSO.
type Image struct {
	Class   elf.Class
	Machine elf.Machine
	// Size is the length of the image in bytes.
	Size uint64
	// Symbols are the exported functions, sorted by offset, then name.
	Symbols []Symbol
}

// Lookup returns the symbol with the given name and version.
func (im *Image) Lookup(name, version string) (Symbol, bool) {
	for _, s := range im.Symbols {
		if s.Name == name && s.Version == version {
			return s, true
		}
	}
	return Symbol{}, false
}

// elfFile is an ELF image being parsed. Every read goes through its
// bounds-checked accessors.
type elfFile struct {
	b     []byte
	class elf.Class
	bo    binary.ByteOrder
	loads []elf.ProgHeader
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

func (f *elfFile) u16(off uint64) (uint16, error) {
	if off > uint64(len(f.b)) || uint64(len(f.b))-off < 2 {
		return 0, formatErr("read 2 bytes at file offset %#x: beyond end of %d-byte image", off, len(f.b))
	}
	return f.bo.Uint16(f.b[off:]), nil
}

func (f *elfFile) u32(off uint64) (uint32, error) {
	if off > uint64(len(f.b)) || uint64(len(f.b))-off < 4 {
		return 0, formatErr("read 4 bytes at file offset %#x: beyond end of %d-byte image", off, len(f.b))
	}
	return f.bo.Uint32(f.b[off:]), nil
}

func (f *elfFile) u64(off uint64) (uint64, error) {
	if off > uint64(len(f.b)) || uint64(len(f.b))-off < 8 {
		return 0, formatErr("read 8 bytes at file offset %#x: beyond end of %d-byte image", off, len(f.b))
	}
	return f.bo.Uint64(f.b[off:]), nil
}

// word reads an address-sized field: 4 bytes in ELFCLASS32, 8 in ELFCLASS64.
func (f *elfFile) word(off uint64) (uint64, error) {
	if f.class == elf.ELFCLASS32 {
		v, err := f.u32(off)
		return uint64(v), err
	}
	return f.u64(off)
}

func (f *elfFile) wordSize() uint64 {
	if f.class == elf.ELFCLASS32 {
		return 4
	}
	return 8
}

// fileOff translates a virtual address to a file offset through the PT_LOAD
// segments, as a loader sees the image. n bytes from there must be in the
// file.
func (f *elfFile) fileOff(vaddr, n uint64, what string) (uint64, error) {
	for _, p := range f.loads {
		if vaddr < p.Vaddr || vaddr-p.Vaddr >= p.Filesz || p.Filesz-(vaddr-p.Vaddr) < n {
			continue
		}
		off := p.Off + (vaddr - p.Vaddr)
		if off < p.Off || off > uint64(len(f.b)) || uint64(len(f.b))-off < n {
			break
		}
		return off, nil
	}
	return 0, formatErr("%s at %#x (%d bytes) is outside every loaded segment", what, vaddr, n)
}

// cstring reads a NUL-terminated string at offset off within a string table
// of size strsz starting at file offset tab.
func (f *elfFile) cstring(tab, strsz, off uint64) (string, error) {
	if off >= strsz {
		return "", formatErr("string offset %#x beyond string table size %#x", off, strsz)
	}
	s := f.b[tab+off : tab+strsz]
	i := slices.Index(s, 0)
	if i < 0 {
		return "", formatErr("string at offset %#x is not NUL-terminated", off)
	}
	return string(s[:i]), nil
}

// dynamic holds the PT_DYNAMIC entries the parser uses; zero means absent.
type dynamic struct {
	strtab, symtab, strsz, syment, hash, gnuHash, versym, verdef, verdefnum uint64
}

const maxSymbols = 1 << 16 // far above any vDSO; bounds work on corrupt input

// Parse parses a vDSO image from its bytes: through the program headers and
// PT_DYNAMIC, as a loader would, since a vDSO may have no section headers.
// It accepts little-endian ELFCLASS64 and ELFCLASS32 images with OS ABI
// NONE or LINUX.
func Parse(b []byte) (*Image, error) {
	f := &elfFile{b: b, bo: binary.LittleEndian}
	if len(b) < elf.EI_NIDENT {
		return nil, formatErr("%d bytes is shorter than an ELF identification", len(b))
	}
	if string(b[:4]) != elf.ELFMAG {
		return nil, formatErr("bad ELF magic % x", b[:4])
	}
	f.class = elf.Class(b[elf.EI_CLASS])
	if f.class != elf.ELFCLASS64 && f.class != elf.ELFCLASS32 {
		return nil, formatErr("unsupported ELF class %v", f.class)
	}
	if d := elf.Data(b[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return nil, formatErr("unsupported byte order %v", d)
	}
	if v := elf.Version(b[elf.EI_VERSION]); v != elf.EV_CURRENT {
		return nil, formatErr("unsupported ELF version %v", v)
	}
	if abi := elf.OSABI(b[elf.EI_OSABI]); abi != elf.ELFOSABI_NONE && abi != elf.ELFOSABI_LINUX {
		return nil, formatErr("unsupported OS ABI %v", abi)
	}

	// Offsets of the ELF header fields differ between the classes.
	var phoffAt, phentAt, phnumAt, phentWant uint64 = 0x20, 0x36, 0x38, 56
	if f.class == elf.ELFCLASS32 {
		phoffAt, phentAt, phnumAt, phentWant = 0x1c, 0x2a, 0x2c, 32
	}
	typ, err := f.u16(0x10)
	if err != nil {
		return nil, err
	}
	if elf.Type(typ) != elf.ET_DYN {
		return nil, formatErr("ELF type %v, want ET_DYN", elf.Type(typ))
	}
	machine, err := f.u16(0x12)
	if err != nil {
		return nil, err
	}
	phoff, err := f.word(phoffAt)
	if err != nil {
		return nil, err
	}
	phent, err := f.u16(phentAt)
	if err != nil {
		return nil, err
	}
	phnum, err := f.u16(phnumAt)
	if err != nil {
		return nil, err
	}
	if uint64(phent) != phentWant {
		return nil, formatErr("program header size %d, want %d", phent, phentWant)
	}

	var dyn *elf.ProgHeader
	for i := range uint64(phnum) {
		p, err := f.progHeader(phoff + i*phentWant)
		if err != nil {
			return nil, fmt.Errorf("read program header %d: %w", i, err)
		}
		if p.Off > uint64(len(b)) || uint64(len(b))-p.Off < p.Filesz {
			return nil, formatErr("program header %d: segment [%#x, +%#x) outside %d-byte image", i, p.Off, p.Filesz, len(b))
		}
		switch p.Type {
		case elf.PT_LOAD:
			f.loads = append(f.loads, p)
		case elf.PT_DYNAMIC:
			dyn = &p
		}
	}
	if len(f.loads) == 0 {
		return nil, formatErr("no PT_LOAD segment")
	}
	if dyn == nil {
		return nil, formatErr("no PT_DYNAMIC segment")
	}
	// The load base is where the lowest segment starts; symbol values are
	// relative to the link address, which is 0 for modern vDSOs and a
	// fixed high address for some old ones.
	base := f.loads[0].Vaddr - f.loads[0].Off
	for _, p := range f.loads {
		base = min(base, p.Vaddr-p.Off)
	}

	d, err := f.readDynamic(*dyn)
	if err != nil {
		return nil, err
	}
	syms, err := f.symbols(d, base)
	if err != nil {
		return nil, err
	}
	return &Image{Class: f.class, Machine: elf.Machine(machine), Size: uint64(len(b)), Symbols: syms}, nil
}

func (f *elfFile) progHeader(off uint64) (elf.ProgHeader, error) {
	var p elf.ProgHeader
	typ, err := f.u32(off)
	if err != nil {
		return p, err
	}
	p.Type = elf.ProgType(typ)
	// Field order differs: ELF64 puts p_flags second, ELF32 puts it
	// after p_memsz.
	var fields []*uint64
	if f.class == elf.ELFCLASS64 {
		flags, err := f.u32(off + 4)
		if err != nil {
			return p, err
		}
		p.Flags = elf.ProgFlag(flags)
		fields = []*uint64{&p.Off, &p.Vaddr, &p.Paddr, &p.Filesz, &p.Memsz, &p.Align}
		off += 8
	} else {
		fields = []*uint64{&p.Off, &p.Vaddr, &p.Paddr, &p.Filesz, &p.Memsz}
		off += 4
	}
	for i, fp := range fields {
		if *fp, err = f.word(off + uint64(i)*f.wordSize()); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (f *elfFile) readDynamic(ph elf.ProgHeader) (dynamic, error) {
	var d dynamic
	entSize := 2 * f.wordSize()
	for off := ph.Off; off+entSize <= ph.Off+ph.Filesz; off += entSize {
		tag, err := f.word(off)
		if err != nil {
			return d, err
		}
		val, err := f.word(off + f.wordSize())
		if err != nil {
			return d, err
		}
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			return d, d.validate()
		case elf.DT_STRTAB:
			d.strtab = val
		case elf.DT_SYMTAB:
			d.symtab = val
		case elf.DT_STRSZ:
			d.strsz = val
		case elf.DT_SYMENT:
			d.syment = val
		case elf.DT_HASH:
			d.hash = val
		case elf.DT_GNU_HASH:
			d.gnuHash = val
		case elf.DT_VERSYM:
			d.versym = val
		case elf.DT_VERDEF:
			d.verdef = val
		case elf.DT_VERDEFNUM:
			d.verdefnum = val
		}
	}
	return d, formatErr("PT_DYNAMIC has no DT_NULL terminator")
}

func (d dynamic) validate() error {
	switch {
	case d.strtab == 0:
		return formatErr("no DT_STRTAB")
	case d.symtab == 0:
		return formatErr("no DT_SYMTAB")
	case d.strsz == 0:
		return formatErr("no DT_STRSZ")
	case d.hash == 0 && d.gnuHash == 0:
		return formatErr("neither DT_HASH nor DT_GNU_HASH: symbol count unknown")
	}
	return nil
}

// symbolCount finds the number of dynamic symbols, which the ELF format
// records only inside the hash tables.
func (f *elfFile) symbolCount(d dynamic) (uint64, error) {
	if d.hash != 0 {
		off, err := f.fileOff(d.hash, 8, "DT_HASH")
		if err != nil {
			return 0, err
		}
		nchain, err := f.u32(off + 4)
		return uint64(nchain), err
	}
	// DT_GNU_HASH: nbuckets, symoffset, bloom size, bloom shift, the bloom
	// words, the buckets, then one chain word per symbol from symoffset
	// on. The highest bucket's chain runs to the last symbol; its end is
	// the word with the low bit set.
	off, err := f.fileOff(d.gnuHash, 16, "DT_GNU_HASH")
	if err != nil {
		return 0, err
	}
	nbuckets, _ := f.u32(off)
	symoffset, _ := f.u32(off + 4)
	bloomSize, _ := f.u32(off + 8)
	buckets := off + 16 + uint64(bloomSize)*f.wordSize()
	chains := buckets + 4*uint64(nbuckets)
	if chains > uint64(len(f.b)) {
		return 0, formatErr("DT_GNU_HASH with %d bloom words and %d buckets runs past the image", bloomSize, nbuckets)
	}
	var last uint64
	for i := range uint64(nbuckets) {
		v, err := f.u32(buckets + 4*i)
		if err != nil {
			return 0, err
		}
		last = max(last, uint64(v))
	}
	if last < uint64(symoffset) {
		return uint64(symoffset), nil
	}
	for n := uint64(0); ; n++ {
		if n > maxSymbols {
			return 0, formatErr("DT_GNU_HASH chain longer than %d", maxSymbols)
		}
		v, err := f.u32(chains + 4*(last-uint64(symoffset)))
		if err != nil {
			return 0, fmt.Errorf("read DT_GNU_HASH chain of symbol %d: %w", last, err)
		}
		if v&1 != 0 {
			return last + 1, nil
		}
		last++
	}
}

// versions maps version indexes to names from DT_VERDEF, leaving out the
// base entry, which names the file rather than a version.
func (f *elfFile) versions(d dynamic, strtab uint64) (map[uint16]string, error) {
	names := map[uint16]string{}
	if d.verdef == 0 {
		return names, nil
	}
	const verdefSize, verdauxSize = 20, 8
	vaddr := d.verdef
	for i := uint64(0); ; i++ {
		if i > maxSymbols || (d.verdefnum != 0 && i >= d.verdefnum) {
			break
		}
		off, err := f.fileOff(vaddr, verdefSize, "DT_VERDEF entry")
		if err != nil {
			return nil, err
		}
		flags, _ := f.u16(off + 2)
		ndx, _ := f.u16(off + 4)
		cnt, _ := f.u16(off + 6)
		aux, _ := f.u32(off + 12)
		next, _ := f.u32(off + 16)
		if flags&uint16(elf.VER_FLG_BASE) == 0 && cnt > 0 {
			auxOff, err := f.fileOff(vaddr+uint64(aux), verdauxSize, "DT_VERDEF aux entry")
			if err != nil {
				return nil, err
			}
			nameOff, _ := f.u32(auxOff)
			name, err := f.cstring(strtab, d.strsz, uint64(nameOff))
			if err != nil {
				return nil, fmt.Errorf("read name of version %d: %w", ndx, err)
			}
			names[ndx&0x7fff] = name
		}
		if next == 0 {
			break
		}
		vaddr += uint64(next)
	}
	return names, nil
}

func (f *elfFile) symbols(d dynamic, base uint64) ([]Symbol, error) {
	symSize := uint64(24)
	if f.class == elf.ELFCLASS32 {
		symSize = 16
	}
	if d.syment != 0 && d.syment != symSize {
		return nil, formatErr("DT_SYMENT %d, want %d", d.syment, symSize)
	}
	count, err := f.symbolCount(d)
	if err != nil {
		return nil, err
	}
	if count > maxSymbols {
		return nil, formatErr("%d symbols is more than a vDSO can have", count)
	}
	strtab, err := f.fileOff(d.strtab, d.strsz, "DT_STRTAB")
	if err != nil {
		return nil, err
	}
	symtab, err := f.fileOff(d.symtab, count*symSize, "DT_SYMTAB")
	if err != nil {
		return nil, err
	}
	var versym uint64
	if d.versym != 0 {
		if versym, err = f.fileOff(d.versym, 2*count, "DT_VERSYM"); err != nil {
			return nil, err
		}
	}
	vernames, err := f.versions(d, strtab)
	if err != nil {
		return nil, err
	}

	var syms []Symbol
	for i := range count {
		off := symtab + i*symSize
		var name, value, size uint64
		var info byte
		var shndx uint16
		if f.class == elf.ELFCLASS64 {
			n, _ := f.u32(off)
			info = f.b[off+4]
			shndx, _ = f.u16(off + 6)
			value, _ = f.u64(off + 8)
			size, _ = f.u64(off + 16)
			name = uint64(n)
		} else {
			n, _ := f.u32(off)
			v, _ := f.u32(off + 4)
			s, _ := f.u32(off + 8)
			info = f.b[off+12]
			shndx, _ = f.u16(off + 14)
			name, value, size = uint64(n), uint64(v), uint64(s)
		}
		bind, typ := elf.ST_BIND(info), elf.ST_TYPE(info)
		if typ != elf.STT_FUNC || (bind != elf.STB_GLOBAL && bind != elf.STB_WEAK) || elf.SectionIndex(shndx) == elf.SHN_UNDEF {
			continue
		}
		s := Symbol{Size: size}
		if s.Name, err = f.cstring(strtab, d.strsz, name); err != nil {
			return nil, fmt.Errorf("read name of symbol %d: %w", i, err)
		}
		if value < base || value-base >= uint64(len(f.b)) {
			return nil, formatErr("symbol %s at %#x is outside the image", s.Name, value)
		}
		s.Offset = value - base
		if versym != 0 {
			v, _ := f.u16(versym + 2*i)
			s.Version = vernames[v&0x7fff]
		}
		syms = append(syms, s)
	}
	slices.SortFunc(syms, func(a, b Symbol) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), strings.Compare(a.Name, b.Name))
	})
	return syms, nil
}
