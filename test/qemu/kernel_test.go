package qemu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestImageDependency(t *testing.T) {
	tests := []struct {
		name, show, want string
	}{
		{"bookworm", "Package: linux-image-cloud-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)\nDescription: x\n", "linux-image-6.1.0-57-cloud-amd64"},
		{"alternatives and other deps", "Depends: initramfs-tools | linux-initramfs-tool, linux-image-5.10.0-46-cloud-amd64 (= 5.10.262-1)\n", "linux-image-5.10.0-46-cloud-amd64"},
		{"backports", "Depends: linux-image-6.12.95+deb12-cloud-amd64 (= 6.12.95-1~bpo12+1)\n", "linux-image-6.12.95+deb12-cloud-amd64"},
		{"no depends", "Package: linux-image-cloud-amd64\n", ""},
		{"no image", "Depends: libc6\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := imageDependency([]byte(tt.show)); got != tt.want {
				t.Errorf("imageDependency = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImagePackageVersion(t *testing.T) {
	tests := []struct {
		pkg, want string
		ok        bool
	}{
		{"linux-image-6.1.0-57-cloud-amd64", "6.1.0-57", true},
		{"linux-image-6.12.95+deb12-cloud-amd64", "6.12.95+deb12", true},
		{"linux-image-cloud-amd64", "", false},
		{"linux-image-6.1.0-57-cloud-amd64-dbg", "", false},
		{"linux-image-6.1.0-57-cloud-amd64-unsigned", "", false},
		{"linux-image-6.1.0-57-amd64", "", false},
		{"linux-headers-6.1.0-57-cloud-amd64", "", false},
	}
	for _, tt := range tests {
		got, ok := imagePackageVersion(tt.pkg, "cloud-amd64")
		if got != tt.want || ok != tt.ok {
			t.Errorf("imagePackageVersion(%q) = %q, %v; want %q, %v", tt.pkg, got, ok, tt.want, tt.ok)
		}
	}
}

func TestVersionMatches(t *testing.T) {
	tests := []struct {
		release, want string
		ok            bool
	}{
		{"6.1.0-57-cloud-amd64", "6.1", true},
		{"6.12.95+deb12-cloud-amd64", "6.12", true},
		{"6.12.95+deb12-cloud-amd64", "6.1", false},
		{"5.10.0-46-cloud-amd64", "5.10", true},
		{"5.1", "5.1", true},
		{"5.10", "5.1", false},
		{"16.1.0", "6.1", false},
	}
	for _, tt := range tests {
		if got := versionMatches(tt.release, tt.want); got != tt.ok {
			t.Errorf("versionMatches(%q, %q) = %v, want %v", tt.release, tt.want, got, tt.ok)
		}
	}
}

func TestNaturalCompare(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-10-cloud-amd64",
		"linux-image-6.1.0-9-cloud-amd64",
		"linux-image-6.1.0-57-cloud-amd64",
		"linux-image-6.1.0-057-cloud-amd64x",
		"linux-image-6.1.0-48-cloud-amd64",
	}
	slices.SortFunc(names, naturalCompare)
	want := []string{
		"linux-image-6.1.0-9-cloud-amd64",
		"linux-image-6.1.0-10-cloud-amd64",
		"linux-image-6.1.0-48-cloud-amd64",
		"linux-image-6.1.0-57-cloud-amd64",
		"linux-image-6.1.0-057-cloud-amd64x",
	}
	if !slices.Equal(names, want) {
		t.Errorf("sorted:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range [][2]string{{"a", "a"}, {"a1", "a01"}} {
		if c := naturalCompare(p[0], p[1]); c != 0 {
			t.Errorf("naturalCompare(%q, %q) = %d, want 0", p[0], p[1], c)
		}
	}
}

// fakePackage lays out an unpacked kernel package under cache.
func fakePackage(t *testing.T, cache, pkg, release, modules string) {
	t.Helper()
	root := filepath.Join(cache, pkg)
	for _, d := range []string{"boot", filepath.Join(modules, release)} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+release), []byte("bzImage"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFetchFromCache(t *testing.T) {
	tests := []struct {
		name, pkg, release, modules string
		spec                        KernelSpec
		remembered                  bool // a .package file names pkg
		wantErr                     string
	}{
		{name: "remembered", spec: Debian61, pkg: "linux-image-6.1.0-57-cloud-amd64", release: "6.1.0-57-cloud-amd64", modules: "lib/modules", remembered: true},
		{name: "pinned, merged /usr", spec: KernelSpec{Version: "6.12", Flavour: "cloud-amd64", Package: "linux-image-6.12.95+deb12-cloud-amd64"}, pkg: "linux-image-6.12.95+deb12-cloud-amd64", release: "6.12.95+deb12-cloud-amd64", modules: "usr/lib/modules"},
		{name: "wrong version in package", spec: KernelSpec{Version: "5.10", Flavour: "cloud-amd64", Package: "linux-image-6.1.0-57-cloud-amd64"}, pkg: "linux-image-6.1.0-57-cloud-amd64", release: "6.1.0-57-cloud-amd64", modules: "lib/modules", wantErr: "holds release 6.1.0-57"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			fakePackage(t, cache, tt.pkg, tt.release, tt.modules)
			if tt.remembered {
				name := filepath.Join(cache, "linux-"+tt.spec.Version+"-"+tt.spec.Flavour+".package")
				if err := os.WriteFile(name, []byte(tt.pkg+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := &Fetcher{CacheDir: cache}
			k, err := f.Fetch(context.Background(), tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Fetch = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(cache, tt.pkg)
			want := Kernel{
				Spec: tt.spec, Package: tt.pkg, Release: tt.release, Root: root,
				Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+tt.release),
				Modules: filepath.Join(root, tt.modules, tt.release),
			}
			if *k != want {
				t.Errorf("Fetch =\n%+v\nwant\n%+v", *k, want)
			}
		})
	}
}

func TestInspectKernelErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := inspectKernel(dir); err == nil || !strings.Contains(err.Error(), "found 0") {
		t.Errorf("inspectKernel(empty) = %v, want a missing vmlinuz error", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if got, err := DefaultCacheDir(); err != nil || got != "/x/cache/cryo/kernels" {
		t.Errorf("DefaultCacheDir = %q, %v", got, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got, err := DefaultCacheDir(); err != nil || got != "/home/u/.cache/cryo/kernels" {
		t.Errorf("DefaultCacheDir = %q, %v", got, err)
	}
}
