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

// TestBuildIDOfSystemBinary reads the build-id of a system binary and
// compares it with its .note.gnu.build-id section as debug/elf reads it.
func TestBuildIDOfSystemBinary(t *testing.T) {
	f, err := os.Open("/bin/sh")
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
		t.Skip("/bin/sh has no build-id section")
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
	if id, err := buildID(bytes.NewReader([]byte("#!/bin/sh\n"))); id != nil || err != nil {
		t.Errorf("a script: build-id %v, %v; want none", id, err)
	}
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
