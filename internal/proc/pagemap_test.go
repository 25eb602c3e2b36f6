package proc

import (
	"encoding/binary"
	"io"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestPageBits(t *testing.T) {
	for _, tc := range []struct {
		e                                                       uint64
		present, swapped, fileOrShared, excl, soft, guard, keep bool
	}{
		{0, false, false, false, false, false, false, false},
		{1<<63 | 1<<56 | 12345, true, false, false, true, false, false, true},
		{1<<62 | 7, false, true, false, false, false, false, true},
		{1<<63 | 1<<61, true, false, true, false, false, false, true},
		{1 << 55, false, false, false, false, true, false, false},
		// A guard region, as Linux 6.18 reports it: a swap marker.
		{1<<62 | 1<<58 | 0x9f, false, true, false, false, false, true, false},
	} {
		got := [7]bool{PagePresent(tc.e), PageSwapped(tc.e), PageFileOrSharedAnon(tc.e),
			PageExclusive(tc.e), PageSoftDirty(tc.e), PageGuard(tc.e), PresentOrSwapped(tc.e)}
		want := [7]bool{tc.present, tc.swapped, tc.fileOrShared, tc.excl, tc.soft, tc.guard, tc.keep}
		if got != want {
			t.Errorf("%#x: got %v, want %v", tc.e, got, want)
		}
	}
}

func TestPageRuns(t *testing.T) {
	const p, s = 1 << 63, 1 << 62
	ps := uint64(pageSize)
	for _, tc := range []struct {
		entries []uint64
		want    []PageRun
	}{
		{nil, nil},
		{[]uint64{0, 0}, nil},
		{[]uint64{p, p, s, 0, p, 0, 1 << 61, s}, []PageRun{{0x10000, 3}, {0x10000 + 4*ps, 1}, {0x10000 + 7*ps, 1}}},
		{[]uint64{0, p, p, p}, []PageRun{{0x10000 + ps, 3}}},
	} {
		got := PageRuns(0x10000, tc.entries, PresentOrSwapped)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("PageRuns(%x): (-want +got):\n%s", tc.entries, d)
		}
	}
}

// TestReadPagemapSelf touches some pages of fresh anonymous memory and finds
// exactly those in the test process's own pagemap, read whole and in chunks
// of every size up to beyond the mapping.
func TestReadPagemapSelf(t *testing.T) {
	const pages = 16
	ps := int(pageSize)
	mem := mmap(t, pages*ps)
	// No transparent huge pages of any size: they would fault in neighbours.
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	touched := []int{0, 1, 2, 5, 9, 10, 15}
	for _, i := range touched {
		mem[i*ps] = 1
	}
	base := addr(mem)
	want := []PageRun{{base, 3}, {base + 5*pageSize, 1}, {base + 9*pageSize, 2}, {base + 15*pageSize, 1}}

	f, err := os.Open(Path(0, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	end := base + pages*pageSize
	entries, err := ReadPagemap(f, base, end)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		isTouched := i == touched[0]
		if isTouched {
			touched = touched[1:]
		}
		if PagePresent(e) != isTouched || isTouched && (!PageExclusive(e) || PageFileOrSharedAnon(e)) {
			t.Errorf("page %d: entry %#x, touched %v", i, e, isTouched)
		}
	}
	if d := cmp.Diff(want, PageRuns(base, entries, PresentOrSwapped)); d != "" {
		t.Errorf("PageRuns: (-want +got):\n%s", d)
	}

	defer func(n uint64) { pagemapChunk = n }(pagemapChunk)
	for pagemapChunk = 1; pagemapChunk <= pages+1; pagemapChunk++ {
		runs, err := NewPagemapReader(f, []PageRange{{base, end}}).Runs(base, end, PresentOrSwapped)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, runs); d != "" {
			t.Errorf("PagemapReader in chunks of %d: (-want +got):\n%s", pagemapChunk, d)
		}
	}
}

// countingReader counts the reads of the ReaderAt it wraps.
type countingReader struct {
	io.ReaderAt
	reads int
}

func (c *countingReader) ReadAt(b []byte, off int64) (int, error) {
	c.reads++
	return c.ReaderAt.ReadAt(b, off)
}

// TestPagemapReaderRanges reads the runs of several ranges with gaps
// between them, each twice in a row, in windows of every size: the runs
// are those of each range alone, and a window as large as all of them
// reads them in one pread.
func TestPagemapReaderRanges(t *testing.T) {
	const pages = 16
	ps := int(pageSize)
	mem := mmap(t, pages*ps)
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2, 5, 10, 11, 15} {
		mem[i*ps] = 1
	}
	base := addr(mem)
	f, err := os.Open(Path(0, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ranges []PageRange
	for _, r := range [][2]uint64{{0, 3}, {5, 6}, {9, 12}, {15, 16}} {
		ranges = append(ranges, PageRange{base + r[0]*pageSize, base + r[1]*pageSize})
	}
	var want [][]PageRun
	for _, r := range ranges {
		entries, err := ReadPagemap(f, r.Start, r.End)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, PageRuns(r.Start, entries, PresentOrSwapped))
	}
	defer func(n uint64) { pagemapChunk = n }(pagemapChunk)
	for pagemapChunk = 1; pagemapChunk <= pages+1; pagemapChunk++ {
		c := &countingReader{ReaderAt: f}
		p := NewPagemapReader(c, ranges)
		for i, r := range ranges {
			for range 2 {
				runs, err := p.Runs(r.Start, r.End, PresentOrSwapped)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(want[i], runs); d != "" {
					t.Errorf("range %d in windows of %d: (-want +got):\n%s", i, pagemapChunk, d)
				}
			}
		}
		if pagemapChunk >= pages && c.reads != 1 {
			t.Errorf("windows of %d pages: %d reads, want 1", pagemapChunk, c.reads)
		}
	}
	if _, err := NewPagemapReader(f, ranges).Runs(base+3*pageSize, base+4*pageSize, PresentOrSwapped); err == nil {
		t.Errorf("Runs of a page in no range: no error")
	}
}

// madvGuardInstall is MADV_GUARD_INSTALL (Linux >= 6.13).
const madvGuardInstall = 102

// TestReadPagemapGuard installs guard regions in fresh memory with touched
// pages around them and tells the two apart, in chunks of every size.
func TestReadPagemapGuard(t *testing.T) {
	const pages = 8
	ps := int(pageSize)
	mem := mmap(t, pages*ps)
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 4, 7} {
		mem[i*ps] = 1
	}
	for _, r := range [][2]int{{2, 4}, {6, 7}} {
		if err := unix.Madvise(mem[r[0]*ps:r[1]*ps], madvGuardInstall); err != nil {
			t.Skipf("madvise(MADV_GUARD_INSTALL): %v (Linux >= 6.13)", err)
		}
	}
	base := addr(mem)
	f, err := os.Open(Path(0, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if e, err := ReadPagemap(f, base+2*pageSize, base+3*pageSize); err != nil {
		t.Fatal(err)
	} else if !PageGuard(e[0]) {
		t.Skipf("guard page entry %#x: no guard bit (Linux >= 6.15)", e[0])
	}
	want := [][]PageRun{
		{{base, 2}, {base + 4*pageSize, 1}, {base + 7*pageSize, 1}},
		{{base + 2*pageSize, 2}, {base + 6*pageSize, 1}},
	}
	defer func(n uint64) { pagemapChunk = n }(pagemapChunk)
	for pagemapChunk = 1; pagemapChunk <= pages+1; pagemapChunk++ {
		for i, keep := range []func(uint64) bool{PresentOrSwapped, PageGuard} {
			end := base + pages*pageSize
			runs, err := NewPagemapReader(f, []PageRange{{base, end}}).Runs(base, end, keep)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want[i], runs); d != "" {
				t.Errorf("PagemapReader of kind %d in chunks of %d: (-want +got):\n%s", i, pagemapChunk, d)
			}
		}
	}
}

// TestReadPagemapFile checks the file bit on a page of a file mapping.
func TestReadPagemapFile(t *testing.T) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	mem, err := unix.Mmap(int(exe.Fd()), 0, int(pageSize), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if mem[0] != 0x7f {
		t.Fatalf("executable starts with %#x", mem[0])
	}
	f, err := os.Open(Path(0, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ReadPagemap(f, addr(mem), addr(mem)+pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[0]; !PagePresent(e) || !PageFileOrSharedAnon(e) {
		t.Errorf("file page entry %#x", e)
	}
}

func TestReadPagemapErrors(t *testing.T) {
	f, err := os.Open(Path(0, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]uint64{{0x1000, 0x1000}, {0x2000, 0x1000}, {0x1001, 0x2000}, {0x1000, 0x2001}} {
		if e, err := ReadPagemap(f, r[0], r[1]); err == nil {
			t.Errorf("ReadPagemap(%#x, %#x) = %x, want an error", r[0], r[1], e)
		}
		if runs, err := NewPagemapReader(f, []PageRange{{0x1000, 0x3000}}).Runs(r[0], r[1], PresentOrSwapped); err == nil {
			t.Errorf("Runs(%#x, %#x) = %v, want an error", r[0], r[1], runs)
		}
	}
	// Past the user address space, where [vsyscall] lives, the kernel has
	// no entries.
	if e, err := ReadPagemap(f, 0xffffffffff600000, 0xffffffffff601000); err == nil {
		t.Errorf("ReadPagemap of [vsyscall] = %x, want an error", e)
	}
}

// FuzzPageRuns checks that the runs cover exactly the pages kept, in order,
// with no two runs adjacent. The seed is the pagemap of the stack of sleep,
// PFNs cleared.
func FuzzPageRuns(f *testing.F) {
	f.Add(readSeed(f, "pagemap-sleep-stack.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries := make([]uint64, len(b)/8)
		for i := range entries {
			entries[i] = binary.NativeEndian.Uint64(b[8*i:])
		}
		const start = 0x7ff000000000
		runs := PageRuns(start, entries, PresentOrSwapped)
		i := 0 // next page not yet covered
		for _, r := range runs {
			first := int((r.Addr - start) / pageSize)
			if r.Pages == 0 || (r.Addr-start)%pageSize != 0 || first < i || first == i && i > 0 {
				t.Fatalf("runs %v: bad run %v", runs, r)
			}
			for ; i < first; i++ {
				if PresentOrSwapped(entries[i]) {
					t.Fatalf("runs %v miss page %d", runs, i)
				}
			}
			for ; i < first+int(r.Pages); i++ {
				if !PresentOrSwapped(entries[i]) {
					t.Fatalf("runs %v have page %d", runs, i)
				}
			}
		}
		for ; i < len(entries); i++ {
			if PresentOrSwapped(entries[i]) {
				t.Fatalf("runs %v miss page %d", runs, i)
			}
		}
	})
}
