package qemu

import (
	"bytes"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is a decoded newc header with its name and data.
type cpioEntry struct {
	name         string
	ino, mode    uint32
	nlink        uint32
	rmaj, rmin   uint32
	data         []byte
	headerOffset int
}

// readNewc is an independent, strict reader of the format: it checks the
// magic, the hex fields and the 4-byte alignment of every entry.
func readNewc(b []byte) ([]cpioEntry, error) {
	var out []cpioEntry
	off := 0
	for {
		if off%4 != 0 {
			return nil, fmt.Errorf("entry at %d not aligned", off)
		}
		if len(b)-off < 110 {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("bad magic %q at %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("field %d at %d: %w", i, off, err)
			}
			f[i] = uint32(v)
		}
		namesize, filesize := int(f[11]), int(f[6])
		nameEnd := off + 110 + namesize
		if nameEnd > len(b) || b[nameEnd-1] != 0 {
			return nil, fmt.Errorf("bad name at %d", off)
		}
		e := cpioEntry{
			name: string(b[off+110 : nameEnd-1]), ino: f[0], mode: f[1], nlink: f[4],
			rmaj: f[9], rmin: f[10], headerOffset: off,
		}
		dataOff := (nameEnd + 3) &^ 3
		if dataOff+filesize > len(b) {
			return nil, fmt.Errorf("%s: data beyond archive", e.name)
		}
		e.data = b[dataOff : dataOff+filesize]
		off = (dataOff + filesize + 3) &^ 3
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				return nil, fmt.Errorf("%d bytes after trailer", len(b)-off)
			}
			return out, nil
		}
		out = append(out, e)
	}
}

func TestWriteCPIO(t *testing.T) {
	initData := []byte("\x7fELF static init")
	tests := []struct {
		name  string
		files []File
		want  []string // "name mode-octal [major:minor] data"
	}{
		{
			name:  "basic initramfs",
			files: BasicInitramfs(initData),
			want: []string{
				"dev 40755", "dev/console 20600 5:1", "proc 40555", "sys 40555", "tmp 41777",
				"init 100755 \x7fELF static init",
			},
		},
		{
			name: "parents added, odd sizes padded",
			files: []File{
				{Name: "/a/b/c.txt", Mode: 0o644, Data: []byte("x")},
				{Name: "a/b/d", Mode: 0o600, Data: []byte("12345")},
				{Name: "a/link", Mode: fs.ModeSymlink | 0o777, Data: []byte("b/c.txt")},
				{Name: "e", Mode: 0o4755, Data: []byte("1234")},
				{Name: "f", Mode: fs.ModeSetgid | fs.ModeSticky | 0o750},
			},
			want: []string{
				"a 40755", "a/b 40755", "a/b/c.txt 100644 x", "a/b/d 100600 12345",
				"a/link 120777 b/c.txt", "e 104755 1234", "f 103750",
			},
		},
		{
			name:  "empty archive",
			files: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteCPIO(&b, tt.files); err != nil {
				t.Fatal(err)
			}
			entries, err := readNewc(b.Bytes())
			if err != nil {
				t.Fatalf("readNewc: %v", err)
			}
			var got []string
			inos := map[uint32]bool{}
			for _, e := range entries {
				s := fmt.Sprintf("%s %o", e.name, e.mode)
				if e.mode&0o170000 == sIFCHR {
					s += fmt.Sprintf(" %d:%d", e.rmaj, e.rmin)
				}
				if len(e.data) > 0 {
					s += " " + string(e.data)
				}
				got = append(got, s)
				if inos[e.ino] || e.ino == 0 {
					t.Errorf("%s: inode %d not unique", e.name, e.ino)
				}
				inos[e.ino] = true
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// An independent implementation, when the host has one.
			if cpio, err := exec.LookPath("cpio"); err == nil && len(tt.files) > 0 {
				cmd := exec.Command(cpio, "-t", "--quiet")
				cmd.Stdin = bytes.NewReader(b.Bytes())
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("cpio -t: %v", err)
				}
				var names []string
				for _, e := range entries {
					names = append(names, e.name)
				}
				if got, want := strings.TrimSpace(string(out)), strings.Join(names, "\n"); got != want {
					t.Errorf("cpio -t lists:\n%s\nwant:\n%s", got, want)
				}
			}
		})
	}
}

func TestWriteCPIOErrors(t *testing.T) {
	tests := []struct {
		name  string
		files []File
		want  string
	}{
		{"duplicate", []File{{Name: "a", Mode: 0o644}, {Name: "/a", Mode: 0o644}}, "duplicate"},
		{"duplicate of an implied parent", []File{{Name: "d/f", Mode: 0o644}, {Name: "d", Mode: fs.ModeDir | 0o755}}, "duplicate"},
		{"root", []File{{Name: "/", Mode: fs.ModeDir}}, "invalid name"},
		{"fifo", []File{{Name: "p", Mode: fs.ModeNamedPipe}}, "unsupported"},
		{"data on a directory", []File{{Name: "d", Mode: fs.ModeDir, Data: []byte("x")}}, "non-regular"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteCPIO(&bytes.Buffer{}, tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteCPIO = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteInitramfsFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := WriteInitramfsFile(name, BasicInitramfs([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	f, err := FileFromDisk("copy", name)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := readNewc(f.Data)
	if err != nil || len(entries) != 6 {
		t.Fatalf("readNewc = %d entries, %v; want 6", len(entries), err)
	}
	if f.Mode != 0o644 {
		t.Errorf("FileFromDisk mode = %v, want 0644", f.Mode)
	}
}
