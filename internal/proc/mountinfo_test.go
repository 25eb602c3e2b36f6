package proc

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMountinfo(t *testing.T) {
	got, err := ParseMountinfo(readSeed(t, "mountinfo.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Errorf("%d mounts, want 20", len(got))
	}
	want := []Mount{
		{ID: 21, Parent: 26, Major: 0, Minor: 20, Root: "/", Point: "/proc", FSType: "proc", Super: "rw"},
		{ID: 26, Parent: 1, Major: 254, Minor: 0, Root: "/", Point: "/", FSType: "ext4", Super: "rw,discard,resv_strict,resuid=65534,resgid=65534"},
		// Blanks and backslashes are escaped; optional fields precede "-".
		{ID: 41, Parent: 25, Major: 0, Minor: 50, Root: "/a dir", Point: `/mnt/with blank\x`, FSType: "tmpfs", Super: "rw"},
	}
	for _, w := range want {
		found := false
		for _, m := range got {
			if m.ID == w.ID {
				found = true
				if d := cmp.Diff(w, m); d != "" {
					t.Errorf("mount %d (-want +got):\n%s", w.ID, d)
				}
			}
		}
		if !found {
			t.Errorf("no mount %d", w.ID)
		}
	}
	for _, in := range []string{
		"21 26 0:20 / /proc rw,relatime proc proc rw\n",
		"21 26 0:20 / /proc rw - proc\n",
		"x 26 0:20 / /proc rw - proc proc rw\n",
		"21 26 0-20 / /proc rw - proc proc rw\n",
		"21 26 0:20 / /pr\\01 rw - proc proc rw\n",
		"21 26 0:20 / /pr\\777 rw - proc proc rw\n",
		"21 26 0:20 /\\9 /proc rw - proc proc rw\n",
	} {
		if m, err := ParseMountinfo([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseMountinfo(%q) = %+v, %v; want ErrSyntax", in, m, err)
		}
	}
}

func TestReadMountinfoSelf(t *testing.T) {
	ms, err := ReadMountinfo(0)
	if err != nil {
		t.Fatal(err)
	}
	root := false
	for _, m := range ms {
		root = root || m.Point == "/"
	}
	if !root {
		t.Errorf("no mount at / in %+v", ms)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(readSeed(f, "mountinfo.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseMountinfo(b)
		checkFuzzErr(t, err)
	})
}
