package files

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// maxNotes bounds how much of a PT_NOTE segment is read looking for the
// build-id: real ones are a few hundred bytes.
const maxNotes = 64 << 10

// buildID returns the GNU build-id of an ELF file as CRIU's reg entry
// keeps it (build_id: the note's bytes as little-endian 32-bit words, the
// last one padded with zeros), or nil for a file that is not ELF or has
// none. Only the ELF header and program headers are read, not the
// section headers debug/elf parses: a dump reads the build-id of every
// file its process maps while the process is frozen, and libc took
// 120 µs that way.
func buildID(r io.ReaderAt) ([]uint32, error) {
	var hdr [64]byte
	if n, _ := r.ReadAt(hdr[:], 0); n < 16 || string(hdr[:4]) != elf.ELFMAG {
		return nil, nil
	}
	notes, bo, err := noteSegments(r, hdr)
	if err != nil {
		return nil, fmt.Errorf("read ELF headers: %w", err)
	}
	for _, seg := range notes {
		b := make([]byte, min(seg.size, maxNotes))
		if _, err := r.ReadAt(b, int64(seg.off)); err != nil {
			return nil, fmt.Errorf("read ELF notes at %#x: %w", seg.off, err)
		}
		id, err := gnuBuildID(b, bo)
		if id != nil || err != nil {
			return id, err
		}
	}
	return nil, nil
}

// segment is where a PT_NOTE segment lies in its file.
type segment struct{ off, size uint64 }

// maxPhdrs bounds the program header table read: real ones hold a few
// dozen entries.
const maxPhdrs = 4096

// noteSegments lists the PT_NOTE segments of the ELF file whose header
// (its first 64 bytes, fewer for a short file) is hdr, 32- or 64-bit.
func noteSegments(r io.ReaderAt, hdr [64]byte) ([]segment, binary.ByteOrder, error) {
	var bo binary.ByteOrder
	switch elf.Data(hdr[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return nil, nil, fmt.Errorf("data encoding %d", hdr[elf.EI_DATA])
	}
	// Where the class puts e_phoff, e_phentsize, e_phnum and e_shoff, and
	// a program header's p_offset and p_filesz, and a section header's
	// sh_info (for more than PN_XNUM program headers).
	var phoff, shoff uint64
	var entsize, num uint16
	var off, size func(ph []byte) uint64
	var infoAt int
	switch elf.Class(hdr[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		phoff, shoff = bo.Uint64(hdr[0x20:]), bo.Uint64(hdr[0x28:])
		entsize, num = bo.Uint16(hdr[0x36:]), bo.Uint16(hdr[0x38:])
		off = func(ph []byte) uint64 { return bo.Uint64(ph[8:]) }
		size = func(ph []byte) uint64 { return bo.Uint64(ph[32:]) }
		infoAt = 0x2c
		if entsize < 56 {
			return nil, nil, fmt.Errorf("%d-byte program headers", entsize)
		}
	case elf.ELFCLASS32:
		phoff, shoff = uint64(bo.Uint32(hdr[0x1c:])), uint64(bo.Uint32(hdr[0x20:]))
		entsize, num = bo.Uint16(hdr[0x2a:]), bo.Uint16(hdr[0x2c:])
		off = func(ph []byte) uint64 { return uint64(bo.Uint32(ph[4:])) }
		size = func(ph []byte) uint64 { return uint64(bo.Uint32(ph[16:])) }
		infoAt = 0x1c
		if entsize < 32 {
			return nil, nil, fmt.Errorf("%d-byte program headers", entsize)
		}
	default:
		return nil, nil, fmt.Errorf("class %d", hdr[elf.EI_CLASS])
	}
	count := uint64(num)
	if num == 0xffff { // PN_XNUM: the count is section 0's sh_info
		var info [4]byte
		if _, err := r.ReadAt(info[:], int64(shoff)+int64(infoAt)); err != nil || shoff > 1<<62 {
			return nil, nil, fmt.Errorf("program header count at %#x: %v", shoff, err)
		}
		count = uint64(bo.Uint32(info[:]))
	}
	if count > maxPhdrs || phoff > 1<<62 {
		return nil, nil, fmt.Errorf("%d program headers at %#x", count, phoff)
	}
	table := make([]byte, count*uint64(entsize))
	if _, err := r.ReadAt(table, int64(phoff)); err != nil {
		return nil, nil, fmt.Errorf("program headers at %#x: %w", phoff, err)
	}
	var notes []segment
	for ph := range slices.Chunk(table, int(entsize)) {
		if elf.ProgType(bo.Uint32(ph)) == elf.PT_NOTE {
			notes = append(notes, segment{off(ph), size(ph)})
		}
	}
	return notes, bo, nil
}

// gnuBuildID finds the NT_GNU_BUILD_ID note among notes (Elf64_Nhdr
// records, name and descriptor each padded to 4 bytes).
func gnuBuildID(notes []byte, bo binary.ByteOrder) ([]uint32, error) {
	const ntGNUBuildID = 3
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for off := uint64(0); off+12 <= uint64(len(notes)); {
		namesz, descsz := uint64(bo.Uint32(notes[off:])), uint64(bo.Uint32(notes[off+4:]))
		typ := bo.Uint32(notes[off+8:])
		name := off + 12
		desc := name + align(namesz)
		end := desc + align(descsz)
		if end > uint64(len(notes)) {
			return nil, fmt.Errorf("ELF note at %#x: %d-byte name and %d-byte descriptor overrun the %d-byte segment", off, namesz, descsz, len(notes))
		}
		if typ == ntGNUBuildID && bytes.Equal(notes[name:name+namesz], []byte("GNU\x00")) {
			if descsz == 0 {
				return nil, fmt.Errorf("ELF note at %#x: empty build-id", off)
			}
			raw := make([]byte, align(descsz))
			copy(raw, notes[desc:desc+descsz])
			words := make([]uint32, len(raw)/4)
			for i := range words {
				words[i] = binary.LittleEndian.Uint32(raw[4*i:])
			}
			return words, nil
		}
		off = end
	}
	return nil, nil
}
