package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestModuleName(t *testing.T) {
	tests := []struct {
		file, want string
		ok         bool
	}{
		{"virtio_blk.ko", "virtio_blk", true},
		{"virtio_blk.ko.xz", "virtio_blk", true},
		{"virtio-rng.ko.zst", "virtio_rng", true},
		{"modules.order", "", false},
		{"virtio_blk.o", "", false},
	}
	for _, tt := range tests {
		got, ok := moduleName(tt.file)
		if got != tt.want || ok != tt.ok {
			t.Errorf("moduleName(%q) = %q, %v; want %q, %v", tt.file, got, ok, tt.want, tt.ok)
		}
	}
}

// fakeModules lays out a kernel package's modules directory: files, and
// the modules.builtin list.
func fakeModules(t *testing.T, files, builtin []string) *Kernel {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-1-cloud-amd64")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("\x7fELF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Kernel{Release: "6.1.0-1-cloud-amd64", Package: "linux-image-test", Modules: dir}
}

func TestFindModules(t *testing.T) {
	// Like Debian's 6.1 cloud kernel: everything a module.
	k := fakeModules(t, []string{
		"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/block/virtio_blk.ko",
		"kernel/drivers/net/virtio_net.ko",
	}, []string{"kernel/drivers/block/loop.ko"})
	got, err := k.FindModules(VirtioBlkModules, VirtioBlkDeps)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_legacy_dev.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}
	if !slices.Equal(names, want) {
		t.Errorf("6.1-like: %v, want %v", names, want)
	}

	// Like 6.12: virtio built in, virtio_blk compressed.
	k = fakeModules(t, []string{"kernel/drivers/block/virtio_blk.ko.xz"},
		[]string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_pci.ko"})
	got, err = k.FindModules(VirtioBlkModules, VirtioBlkDeps)
	if err != nil || len(got) != 1 || filepath.Base(got[0]) != "virtio_blk.ko.xz" {
		t.Errorf("6.12-like: %v, %v", got, err)
	}
	// virtio_blk built in too: nothing to load.
	k = fakeModules(t, nil, []string{"kernel/drivers/block/virtio_blk.ko"})
	if got, err := k.FindModules(VirtioBlkModules, VirtioBlkDeps); err != nil || len(got) != 0 {
		t.Errorf("all built in: %v, %v", got, err)
	}
	// Missing altogether: an error naming it.
	k = fakeModules(t, []string{"kernel/drivers/virtio/virtio.ko"}, nil)
	if _, err := k.FindModules(VirtioBlkModules, VirtioBlkDeps); err == nil || !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("missing virtio_blk: %v", err)
	}
	if _, err := (&Kernel{Release: "x"}).FindModules(VirtioBlkModules, nil); err == nil {
		t.Error("no modules directory: no error")
	}
}
