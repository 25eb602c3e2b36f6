package files

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

// maxNotes bounds how much of a PT_NOTE segment is read looking for the
// build-id: real ones are a few hundred bytes.
const maxNotes = 64 << 10

// buildID returns the GNU build-id of an ELF file as CRIU's reg entry
// keeps it (build_id: the note's bytes as little-endian 32-bit words, the
// last one padded with zeros), or nil for a file that is not ELF or has
// none.
func buildID(r io.ReaderAt) ([]uint32, error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, nil
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("read ELF headers: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes := make([]byte, min(p.Filesz, maxNotes))
		if _, err := p.ReadAt(notes, 0); err != nil {
			return nil, fmt.Errorf("read ELF notes at %#x: %w", p.Off, err)
		}
		id, err := gnuBuildID(notes, f.ByteOrder)
		if id != nil || err != nil {
			return id, err
		}
	}
	return nil, nil
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
