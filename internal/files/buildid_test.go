package files

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// note encodes one ELF note.
func note(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, []uint32{uint32(len(name)), uint32(len(desc)), typ})
	pad := func(p []byte) []byte { return append(p, make([]byte, (4-len(p)%4)%4)...) }
	b.Write(pad([]byte(name)))
	b.Write(pad(slices.Clone(desc)))
	return b.Bytes()
}

func TestGNUBuildID(t *testing.T) {
	id := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		name    string
		notes   []byte
		want    []uint32
		wantErr bool
	}{
		{"build-id", note("GNU\x00", 3, id), []uint32{0x04030201, 0x08070605, 0x00000a09}, false},
		{"after another note", slices.Concat(note("GNU\x00", 1, []byte{0, 0, 0, 0}), note("GNU\x00", 3, id[:4])), []uint32{0x04030201}, false},
		{"another owner's type 3", note("Go\x00\x00", 3, id), nil, false},
		{"none", nil, nil, false},
		{"trailing bytes", []byte{1, 2, 3}, nil, false},
		{"descriptor overruns", note("GNU\x00", 3, id)[:20], nil, true},
		{"empty build-id", note("GNU\x00", 3, nil), nil, true},
		{"huge sizes", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gnuBuildID(tc.notes, binary.LittleEndian)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("build-id (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildIDOfSystemBinary reads the build-id of system binaries and
// libraries and compares each with its .note.gnu.build-id section as
// debug/elf reads it.
func TestBuildIDOfSystemBinary(t *testing.T) {
	for _, path := range []string{"/bin/sh", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"} {
		t.Run(path, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Skip(err)
			}
			defer f.Close()
			ef, err := elf.NewFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sec := ef.Section(".note.gnu.build-id")
			if sec == nil {
				t.Skipf("%s has no build-id section", path)
			}
			data, err := sec.Data()
			if err != nil {
				t.Fatal(err)
			}
			desc := data[16:] // Elf64_Nhdr and "GNU\0"
			got, err := buildID(f)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			for _, w := range got {
				b = binary.LittleEndian.AppendUint32(b, w)
			}
			if len(got) == 0 || !bytes.Equal(b[:len(desc)], desc) {
				t.Errorf("build-id %x, section says %x", b, desc)
			}
		})
	}
	if id, err := buildID(bytes.NewReader([]byte("#!/bin/sh\n"))); id != nil || err != nil {
		t.Errorf("a script: build-id %v, %v; want none", id, err)
	}
}

// elfWithNote builds the headers of an ELF file of class c (32 or 64-bit,
// little-endian) whose one PT_NOTE segment holds notes, after a PT_LOAD.
func elfWithNote(c elf.Class, notes []byte) []byte {
	bo := binary.LittleEndian
	hdr, ph := 64, 56
	if c == elf.ELFCLASS32 {
		hdr, ph = 52, 32
	}
	b := make([]byte, hdr+2*ph)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(c), byte(elf.ELFDATA2LSB), 1
	notesOff := uint64(len(b))
	if c == elf.ELFCLASS64 {
		bo.PutUint64(b[0x20:], uint64(hdr))
		bo.PutUint16(b[0x36:], uint16(ph))
		bo.PutUint16(b[0x38:], 2)
		bo.PutUint32(b[hdr:], uint32(elf.PT_LOAD))
		bo.PutUint32(b[hdr+ph:], uint32(elf.PT_NOTE))
		bo.PutUint64(b[hdr+ph+8:], notesOff)
		bo.PutUint64(b[hdr+ph+32:], uint64(len(notes)))
	} else {
		bo.PutUint32(b[0x1c:], uint32(hdr))
		bo.PutUint16(b[0x2a:], uint16(ph))
		bo.PutUint16(b[0x2c:], 2)
		bo.PutUint32(b[hdr:], uint32(elf.PT_LOAD))
		bo.PutUint32(b[hdr+ph:], uint32(elf.PT_NOTE))
		bo.PutUint32(b[hdr+ph+4:], uint32(notesOff))
		bo.PutUint32(b[hdr+ph+16:], uint32(len(notes)))
	}
	return append(b, notes...)
}

func TestBuildIDOfHeaders(t *testing.T) {
	id := note("GNU\x00", 3, []byte{1, 2, 3, 4, 5})
	want := []uint32{0x04030201, 5}
	for _, tc := range []struct {
		name    string
		file    []byte
		want    []uint32
		wantErr bool
	}{
		{"64-bit", elfWithNote(elf.ELFCLASS64, id), want, false},
		{"32-bit", elfWithNote(elf.ELFCLASS32, id), want, false},
		{"no build-id", elfWithNote(elf.ELFCLASS64, note("GNU\x00", 1, []byte{0, 0, 0, 0})), nil, false},
		{"headers cut short", elfWithNote(elf.ELFCLASS64, id)[:100], nil, true},
		{"notes cut short", elfWithNote(elf.ELFCLASS64, id)[:190], nil, true},
		{"bad class", func() []byte { b := elfWithNote(elf.ELFCLASS64, id); b[elf.EI_CLASS] = 9; return b }(), nil, true},
		{"bad encoding", func() []byte { b := elfWithNote(elf.ELFCLASS64, id); b[elf.EI_DATA] = 0; return b }(), nil, true},
		{"not ELF", []byte("#!/bin/sh\n"), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := buildID(bytes.NewReader(tc.file))
			if (err != nil) != tc.wantErr || !cmp.Equal(got, tc.want) {
				t.Errorf("buildID = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzBuildID(f *testing.F) {
	f.Add(elfWithNote(elf.ELFCLASS64, note("GNU\x00", 3, []byte{1, 2, 3, 4, 5})))
	f.Add(elfWithNote(elf.ELFCLASS32, note("GNU\x00", 3, []byte{9})))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := buildID(bytes.NewReader(b))
		if err != nil && id != nil {
			t.Fatalf("build-id %v with error %v", id, err)
		}
		if len(id)*4 > len(b)+3 {
			t.Fatalf("%d-word build-id from %d bytes", len(id), len(b))
		}
	})
}

func FuzzGNUBuildID(f *testing.F) {
	f.Add(note("GNU\x00", 3, []byte{1, 2, 3, 4, 5}))
	f.Add(slices.Concat(note("GNU\x00", 1, []byte{0, 0, 0, 0}), note("GNU\x00", 3, []byte{9})))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, notes []byte) {
		id, err := gnuBuildID(notes, binary.LittleEndian)
		if err != nil && id != nil {
			t.Fatalf("build-id %v with error %v", id, err)
		}
		if len(id)*4 > len(notes)+3 {
			t.Fatalf("%d-word build-id from %d bytes of notes", len(id), len(notes))
		}
	})
}
