package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests here check our images against crit, CRIU's own decoder (an
// independent implementation, in Python). Debian packages CRIU 3.17, so
// they also prove that older CRIU tools read what we write.

// crit returns the path of crit, failing the test if it is missing: a
// silent skip would hide that nothing checked our format.
func crit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("crit")
	if err != nil {
		if testing.Short() {
			t.Skip("crit not installed")
		}
		t.Fatal("crit not found: run `make test`, which installs it (Debian package criu), or use -short")
	}
	return p
}

func runCrit(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(crit(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crit %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

func TestCritDecodesEveryKind(t *testing.T) {
	crit(t)
	dir := t.TempDir()
	for _, s := range samples() {
		t.Run(s.kind.String(), func(t *testing.T) {
			if s.crit == "" {
				t.Skipf("%s is cryo's own image: crit does not know its magic", s.kind.FileName(s.id))
			}
			path := filepath.Join(dir, s.kind.FileName(s.id))
			if err := os.WriteFile(path, encode(t, s), 0o600); err != nil {
				t.Fatal(err)
			}
			out := runCrit(t, "decode", "-i", path, "--pretty")
			var got, want any
			if err := unmarshalJSON(out, &got); err != nil {
				t.Fatalf("crit output: %v\n%s", err, out)
			}
			if err := unmarshalJSON(s.crit, &want); err != nil {
				t.Fatalf("test table: %v", err)
			}
			for _, d := range subset("", want, got) {
				t.Error(d)
			}
			if t.Failed() {
				t.Logf("crit output:\n%s", out)
			}
		})
	}
}

func unmarshalJSON(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	return d.Decode(v)
}

// subset lists where got lacks or differs from a member of want. Lists must
// match in length; objects in got may have more members.
func subset(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want an object", path, got)}
		}
		var d []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				d = append(d, fmt.Sprintf("%s.%s: missing, want %v", path, k, wv))
				continue
			}
			d = append(d, subset(path+"."+k, wv, gv)...)
		}
		return d
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %d elements", path, got, len(w))}
		}
		var d []string
		for i := range w {
			d = append(d, subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return d
	default:
		if want != got {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		return nil
	}
}

// TestCritExplore writes the images `crit x` needs for one process, the
// memory through PageWriter, and checks what crit makes of the directory.
func TestCritExplore(t *testing.T) {
	crit(t)
	path := filepath.Join(t.TempDir(), "dump")
	d, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples() {
		switch s.kind {
		case MM:
			// As a dump writes it: the VMAs in parts, then the rest.
			mm := pb.Clone(s.recs[0].msg.(*pb.MmEntry))
			r, err := d.CreateRecord(MM, s.id)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range mm.Vmas {
				if err := r.Add(pb.MmVmasField, v); err != nil {
					t.Fatal(err)
				}
			}
			mm.Vmas = nil
			if err := r.Finish(mm); err != nil {
				t.Fatal(err)
			}
		case Inventory, Pstree, Core, IDs, Fdinfo, FS:
			var msgs []pb.Message
			for _, r := range s.recs {
				msgs = append(msgs, r.msg)
			}
			if err := d.WriteImage(s.kind, s.id, msgs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	reg := func(id uint32, name string) pb.Message {
		return complete(&pb.FileEntry{Type: pb.FdTypes_REG, Id: id,
			Entry: &pb.RegFileEntry{Id: id, Name: name, Fown: &pb.FownEntry{}}})
	}
	err = d.WriteImage(Files, 0,
		reg(9, "/usr/bin/sleep"),
		complete(&pb.FileEntry{Type: pb.FdTypes_PIPE, Id: 10,
			Entry: &pb.PipeEntry{Id: 10, PipeId: 77, Fown: &pb.FownEntry{}}}),
		reg(11, "/tmp"), reg(12, "/"))
	if err != nil {
		t.Fatal(err)
	}
	pw, err := d.CreatePages(4242, 1)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{0xaa}, os.Getpagesize())
	for _, vaddr := range []uint64{0x7f0000000000, 0x7f0000001000, 0x7f0000003000} {
		if err := pw.WritePages(vaddr, page); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		want []string // lines, spaces collapsed, that must appear
	}{
		{[]string{"x", path, "ps"}, []string{"PID PGID SID COMM", "4242 4242 4000 sleep"}},
		{[]string{"x", path, "fds"}, []string{"4242", "3: /usr/bin/sleep", "4: pipe[77]", "cwd: /tmp", "root: /"}},
		{[]string{"x", path, "mems"}, []string{"exe /usr/bin/sleep", "00400000-00401000 r-x /usr/bin/sleep",
			"7f0000000000-7f0000004000 rw-"}},
		{[]string{"x", path, "rss"}, []string{"7f0000000000 / 2 7f0000000000 / 4", "7f0000003000 / 1 ~"}},
		{[]string{"decode", "-i", filepath.Join(path, "pagemap-4242.img")}, []string{
			`{"magic": "PAGEMAP", "entries": [{"pages_id": 1}, ` +
				`{"vaddr": 139637976727552, "nr_pages": 2, "flags": 4}, ` +
				`{"vaddr": 139637976739840, "nr_pages": 1, "flags": 4}]}`}},
		{[]string{"show", filepath.Join(path, "fs-4242.img")}, []string{`"cwd_id": 11,`}},
	} {
		out := runCrit(t, tc.args...)
		t.Logf("crit %s:\n%s", strings.Join(tc.args, " "), out)
		lines := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			lines[strings.Join(strings.Fields(l), " ")] = true
		}
		for _, w := range tc.want {
			if !lines[w] {
				t.Errorf("crit %s: no line %q in:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
}
