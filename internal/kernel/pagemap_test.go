package kernel_test

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

func TestPagemapScanRequest(t *testing.T) {
	// _IOWR('f', 16, struct pm_scan_arg): twelve 64-bit fields.
	const iocRead, iocWrite, fsType, scanNr, argSize = 2, 1, 0x66, 16, 12 * 8 // 0x66 is 'f'
	want := (iocRead|iocWrite)<<30 | argSize<<16 | fsType<<8 | scanNr
	if kernel.PagemapScanRequest != want {
		t.Errorf("PAGEMAP_SCAN = %#x, want %#x", kernel.PagemapScanRequest, want)
	}
	if n := binary.Size(kernel.PageRegion{}); n != 24 {
		t.Errorf("page_region is %d bytes, want 24", n)
	}
}

// TestPagemapScanGuards installs guard regions in fresh memory and finds
// them, one region per call.
func TestPagemapScanGuards(t *testing.T) {
	const page = 4096
	mem, err := unix.Mmap(-1, 0, 8*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 1
	}
	for _, r := range [][2]int{{2, 4}, {6, 7}} {
		if err := unix.Madvise(mem[r[0]*page:r[1]*page], 102); err != nil { // MADV_GUARD_INSTALL
			t.Skipf("madvise(MADV_GUARD_INSTALL): %v (Linux >= 6.13)", err)
		}
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := uint64(reflect.ValueOf(mem).Pointer())
	end := base + 8*page
	var got []kernel.PageRegion
	vec := make([]kernel.PageRegion, 1)
	for start := base; start < end; {
		n, walkEnd, err := kernel.PagemapScan(int(f.Fd()), start, end, kernel.PageIsGuard, 0, vec)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
			t.Skipf("PAGEMAP_SCAN of guard regions: %v (Linux >= 6.15)", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, vec[:n]...)
		if walkEnd <= start {
			t.Fatalf("walk from %#x ended at %#x", start, walkEnd)
		}
		start = walkEnd
	}
	want := []kernel.PageRegion{
		{Start: base + 2*page, End: base + 4*page, Categories: kernel.PageIsGuard},
		{Start: base + 6*page, End: base + 7*page, Categories: kernel.PageIsGuard},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("guard regions (-want +got):\n%s", d)
	}
}

// TestPagemapScanPopulated finds the pages of fresh memory that were
// touched, asking for pages present or swapped out.
func TestPagemapScanPopulated(t *testing.T) {
	const page = 4096
	mem, err := unix.Mmap(-1, 0, 8*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for _, p := range []int{1, 2, 6} {
		mem[p*page] = 1
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := uint64(reflect.ValueOf(mem).Pointer())
	vec := make([]kernel.PageRegion, 4)
	n, walkEnd, err := kernel.PagemapScan(int(f.Fd()), base, base+8*page, 0, kernel.PageIsPresent|kernel.PageIsSwapped, vec)
	if errors.Is(err, unix.ENOTTY) {
		t.Skipf("PAGEMAP_SCAN: %v (Linux >= 6.7)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if walkEnd != base+8*page {
		t.Errorf("the walk ended at %#x, want %#x", walkEnd, base+8*page)
	}
	want := []kernel.PageRegion{
		{Start: base + 1*page, End: base + 3*page, Categories: kernel.PageIsPresent},
		{Start: base + 6*page, End: base + 7*page, Categories: kernel.PageIsPresent},
	}
	if d := cmp.Diff(want, vec[:n]); d != "" {
		t.Errorf("populated regions (-want +got):\n%s", d)
	}
}
