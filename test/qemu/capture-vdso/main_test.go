package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/test/qemu"
)

const maps618 = `00400000-004d1000 r-xp 00000000 00:20 1234                               /init
c000000000-c000400000 rw-p 00000000 00:00 0 
7f1cf0000000-7f1cf0021000 rw-p 00000000 00:00 0 
7fff5a1e0000-7fff5a201000 rw-p 00000000 00:00 0                          [stack]
7f1cf0183000-7f1cf0187000 r--p 00000000 00:00 0                          [vvar]
7f1cf0187000-7f1cf0189000 r--p 00000000 00:00 0                          [vvar_vclock]
7f1cf0189000-7f1cf018b000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestSpecialMaps(t *testing.T) {
	tests := []struct {
		name, maps string
		want       []string
	}{
		{"6.18", maps618, []string{
			"7f1cf0183000-7f1cf0187000 r--p 00000000 00:00 0                          [vvar]",
			"7f1cf0187000-7f1cf0189000 r--p 00000000 00:00 0                          [vvar_vclock]",
			"7f1cf0189000-7f1cf018b000 r-xp 00000000 00:00 0                          [vdso]",
		}},
		{"6.1 without vvar_vclock", "7ffc46886000-7ffc4688a000 r--p 00000000 00:00 0                          [vvar]\n7ffc4688a000-7ffc4688c000 r-xp 00000000 00:00 0                          [vdso]\n", []string{
			"7ffc46886000-7ffc4688a000 r--p 00000000 00:00 0                          [vvar]",
			"7ffc4688a000-7ffc4688c000 r-xp 00000000 00:00 0                          [vdso]",
		}},
		{"file named like a pseudo mapping is not one", "00400000-00401000 r-xp 00000000 08:01 5 /tmp/[vdso] x\n", nil},
		{"vdso=0", "00400000-00401000 r-xp 00000000 08:01 5 /init\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := specialMaps([]byte(tt.maps)); !slices.Equal(got, tt.want) {
				t.Errorf("specialMaps =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestMapRange(t *testing.T) {
	tests := []struct {
		line       string
		start, end uint64
		ok         bool
	}{
		{"7f1cf0189000-7f1cf018b000 r-xp 00000000 00:00 0 [vdso]", 0x7f1cf0189000, 0x7f1cf018b000, true},
		{"f7f00000-f7f02000 r-xp 00000000 00:00 0 [vdso]", 0xf7f00000, 0xf7f02000, true},
		{"f7f02000-f7f00000 r-xp", 0, 0, false},
		{"zz-f7f00000 r-xp", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, e, err := mapRange(tt.line)
		if s != tt.start || e != tt.end || (err == nil) != tt.ok {
			t.Errorf("mapRange(%q) = %#x, %#x, %v", tt.line, s, e, err)
		}
	}
}

// testReport is a plausible 6.1 report with an 8 KiB image.
func testReport() *report {
	vdso := make([]byte, 8192)
	copy(vdso, "\x7fELF\x02\x01\x01")
	return &report{
		Release: "6.1.0-57-cloud-amd64", Machine: "x86_64", GOARCH: "amd64",
		Maps: []string{
			"7ffc46886000-7ffc4688a000 r--p 00000000 00:00 0                          [vvar]",
			"7ffc4688a000-7ffc4688c000 r-xp 00000000 00:00 0                          [vdso]",
		},
		VDSO: vdso,
	}
}

func TestParseReports(t *testing.T) {
	r := testReport()
	payload, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	console.WriteString("SeaBIOS\r\nBooting from ROM...")
	if err := qemu.WriteFrame(&console, "other", []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if err := qemu.WriteFrame(&console, frameTag, payload); err != nil {
		t.Fatal(err)
	}
	console.WriteString("[    3.52] reboot: Power down\r\n")

	got, err := parseReports(bytes.ReplaceAll(console.Bytes(), []byte("\n"), []byte("\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Release != r.Release || !slices.Equal(got[0].Maps, r.Maps) || !bytes.Equal(got[0].VDSO, r.VDSO) {
		t.Fatalf("parseReports = %+v", got)
	}

	if _, err := parseReports([]byte(strings.Split(console.String(), "cryo-qemu-end "+frameTag)[0])); err == nil {
		t.Error("parseReports accepted a report cut short")
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(r *report)
		want    string
		wantErr string
	}{
		{name: "amd64", want: "linux-6.1-amd64"},
		{name: "i386", edit: func(r *report) { r.GOARCH = "386" }, want: "linux-6.1-i386"},
		{name: "not elf", edit: func(r *report) { r.VDSO[0] = 0 }, wantErr: "not an ELF"},
		{name: "size mismatch", edit: func(r *report) { r.VDSO = r.VDSO[:4096] }, wantErr: "maps size 8192"},
		{name: "unknown arch", edit: func(r *report) { r.GOARCH = "arm64" }, wantErr: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &capturer{out: t.TempDir()}
			r := testReport()
			if tt.edit != nil {
				tt.edit(r)
			}
			name, err := c.write(r)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("write = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(name, tt.want) || strings.Contains(name, "unchanged") {
				t.Errorf("write = %q, want %s", name, tt.want)
			}
			so, _ := os.ReadFile(filepath.Join(c.out, tt.want+".so"))
			maps, _ := os.ReadFile(filepath.Join(c.out, tt.want+".maps"))
			if !bytes.Equal(so, r.VDSO) || string(maps) != strings.Join(r.Maps, "\n")+"\n" {
				t.Errorf("files differ from the report:\n%s", maps)
			}

			// The same image elsewhere in memory leaves the files alone.
			moved := testReport()
			moved.GOARCH = r.GOARCH
			moved.Maps = []string{
				"7f0000001000-7f0000005000 r--p 00000000 00:00 0                          [vvar]",
				"7f0000005000-7f0000007000 r-xp 00000000 00:00 0                          [vdso]",
			}
			if name, err := c.write(moved); err != nil || !strings.Contains(name, "unchanged") {
				t.Errorf("second write = %q, %v; want unchanged", name, err)
			}
			if again, _ := os.ReadFile(filepath.Join(c.out, tt.want+".maps")); !bytes.Equal(again, maps) {
				t.Error("maps rewritten for a moved but identical layout")
			}
		})
	}
}

func TestSameLayout(t *testing.T) {
	a := testReport().Maps
	tests := []struct {
		name string
		b    []string
		want bool
	}{
		{"identical", a, true},
		{"moved", []string{
			"7f0000000000-7f0000004000 r--p 00000000 00:00 0                          [vvar]",
			"7f0000004000-7f0000006000 r-xp 00000000 00:00 0                          [vdso]",
		}, true},
		{"gap", []string{
			"7f0000000000-7f0000004000 r--p 00000000 00:00 0                          [vvar]",
			"7f0000005000-7f0000007000 r-xp 00000000 00:00 0                          [vdso]",
		}, false},
		{"vvar_vclock added", []string{
			"7f0000000000-7f0000004000 r--p 00000000 00:00 0                          [vvar]",
			"7f0000004000-7f0000006000 r--p 00000000 00:00 0                          [vvar_vclock]",
			"7f0000006000-7f0000008000 r-xp 00000000 00:00 0                          [vdso]",
		}, false},
		{"whitespace differs", []string{
			"7f0000000000-7f0000004000 r--p 00000000 00:00 0 [vvar]",
			"7f0000004000-7f0000006000 r-xp 00000000 00:00 0 [vdso]",
		}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := sameLayout(a, tt.b); got != tt.want {
			t.Errorf("%s: sameLayout = %v, want %v", tt.name, got, tt.want)
		}
	}
}
