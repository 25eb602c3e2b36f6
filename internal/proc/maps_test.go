package proc

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMaps(t *testing.T) {
	in := "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1835 /usr/bin/cat\n" +
		"7f936efab000-7f936efaf000 r--p 00000000 00:00 0                          [vvar]\n" +
		"7f0000000000-7f0000001000 rw-s 00001000 00:01 42                         /memfd:x (deleted)\n" +
		"7f0000002000-7f0000003000 ---p 00000000 00:00 0 \n" +
		"7f0000004000-7f0000005000 rw-p 00000000 00:00 0\n" +
		"7f0000006000-7f0000007000 r--p 00000000 fe:01 7 /a file with  spaces\n" +
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
	want := []Mapping{
		{0x55d0c0a00000, 0x55d0c0a02000, "r--p", 0, 0xfe, 1, 1835, "/usr/bin/cat"},
		{0x7f936efab000, 0x7f936efaf000, "r--p", 0, 0, 0, 0, "[vvar]"},
		{0x7f0000000000, 0x7f0000001000, "rw-s", 0x1000, 0, 1, 42, "/memfd:x (deleted)"},
		{0x7f0000002000, 0x7f0000003000, "---p", 0, 0, 0, 0, ""},
		{0x7f0000004000, 0x7f0000005000, "rw-p", 0, 0, 0, 0, ""},
		{0x7f0000006000, 0x7f0000007000, "r--p", 0, 0xfe, 1, 7, "/a file with  spaces"},
		{0xffffffffff600000, 0xffffffffff601000, "--xp", 0, 0, 0, 0, "[vsyscall]"},
	}
	got, err := ParseMaps([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParseMapsErrors(t *testing.T) {
	for _, in := range []string{
		"garbage\n",
		"7f00-7e00 r--p 00000000 00:00 0 x\n",
		"7f00 r--p 00000000 00:00 0\n",
		"7f00-7f10 r-p 00000000 00:00 0\n",
		"7f00-7f10 r--p 0000zz00 00:00 0\n",
		"7f00-7f10 r--p 00000000 0000 0\n",
		"7f00-7f10 r--p 00000000 00:00 x\n",
		"7f00-7f10 r--p 00000000 00:00\n",
		"7f00-7f10 r--p\n",
		"7f00-7f10 r--p 00000000 00:00 0\n\n",
		"7f00-1ffffffffffffffff r--p 00000000 00:00 0\n",
	} {
		if m, err := ParseMaps([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseMaps(%q) = %v, %v; want ErrSyntax", in, m, err)
		}
	}
}

func TestReadMapsSelf(t *testing.T) {
	maps, err := ReadMaps(0)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range maps {
		found = found || m.Path == exe
	}
	if !found {
		t.Errorf("own maps do not show the executable %s", exe)
	}
}

func FuzzParseMaps(f *testing.F) {
	b, err := os.ReadFile("testdata/maps-cat.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("7f00-7f10 r--p 00000000 00:00 0 [vdso]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		maps, err := ParseMaps(b)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error does not wrap ErrSyntax: %v", err)
			}
			return
		}
		for _, m := range maps {
			if m.End <= m.Start {
				t.Fatalf("empty mapping %+v", m)
			}
		}
	})
}
