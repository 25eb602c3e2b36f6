package proc

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Cgroup
		ok   bool
	}{
		{"0::/\n", []Cgroup{{0, "", "/"}}, true},
		{"4:memory:/process_api/b17c\n1:cpu,cpuacct:/\n0::/x y\n",
			[]Cgroup{{4, "memory", "/process_api/b17c"}, {1, "cpu,cpuacct", "/"}, {0, "", "/x y"}}, true},
		{"9:name=systemd:/a:b\n", []Cgroup{{9, "name=systemd", "/a:b"}}, true},
		{"0::\n", nil, false},
		{"x::/\n", nil, false},
		{"0:/\n", nil, false},
	} {
		got, err := ParseCgroup([]byte(tc.in))
		if (err == nil) != tc.ok || !cmp.Equal(got, tc.want) {
			t.Errorf("ParseCgroup(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestReadCgroupSelf(t *testing.T) {
	b, err := ReadCgroupFile(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cgs, err := ParseCgroup(b); err != nil || len(cgs) == 0 {
		t.Fatalf("ParseCgroup(%q) = %v, %v", b, cgs, err)
	}
	if _, err := ReadCgroupFile(0, os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseCgroup(f *testing.F) {
	for _, name := range []string{"testdata/cgroup-hybrid.txt", "testdata/cgroup-v2.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cgs, err := ParseCgroup(b)
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("error does not wrap ErrSyntax: %v", err)
		}
		for _, c := range cgs {
			if c.Path == "" || c.Path[0] != '/' || c.Hierarchy < 0 {
				t.Fatalf("ParseCgroup(%q) gave %+v", b, c)
			}
		}
	})
}
