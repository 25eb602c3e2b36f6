package proc

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const smapsVvar = `7f936efab000-7f936efaf000 r--p 00000000 00:00 0                          [vvar]
Size:                 16 kB
KernelPageSize:        4 kB
Rss:                   0 kB
Anonymous:             0 kB
Swap:                  0 kB
THPeligible:           0
VmFlags: rd mr pf io de dd 
`

func TestParseSmaps(t *testing.T) {
	in := smapsVvar +
		"7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n" +
		"Rss:                   8 kB\n" +
		"Anonymous:             8 kB\n" +
		"ProtectionKey:         0\n" +
		"KernelPageSize:     2048 kB\n" +
		"Swap:                  4 kB\n" +
		"VmFlags: rd wr mr mw me ac dc wf hg ?? zz sl\n" +
		"7fff00000000-7fff00001000 rw-p 00000000 00:00 0    [stack]\n" +
		"VmFlags: rd wr gd\n" +
		"ProtectionKey: 15\n" +
		"Swap: 0 kB\n" +
		"Anonymous: 0 kB\n" +
		"Rss: 18014398509481983 kB"
	want := []SmapsEntry{
		{
			Mapping:        Mapping{0x7f936efab000, 0x7f936efaf000, "r--p", 0, 0, 0, 0, "[vvar]"},
			KernelPageSize: 4096,
			Flags:          VmRead | VmMayRead | VmPfnMap | VmIO | VmDontExpand | VmDontDump,
		},
		{
			Mapping:        Mapping{0x7f0000000000, 0x7f0000004000, "rw-p", 0, 0, 0, 0, ""},
			Rss:            8192,
			Anonymous:      8192,
			Swap:           4096,
			KernelPageSize: 2 << 20,
			Flags: VmRead | VmWrite | VmMayRead | VmMayWrite | VmMayExec | VmAccount |
				VmDontCopy | VmWipeOnFork | VmHugePage | VmSealed,
			OtherFlags: []string{"??", "zz"},
		},
		{
			Mapping:       Mapping{0x7fff00000000, 0x7fff00001000, "rw-p", 0, 0, 0, 0, "[stack]"},
			Rss:           18014398509481983 << 10,
			ProtectionKey: 15,
			Flags:         VmRead | VmWrite | VmGrowsDown,
		},
	}
	got, err := ParseSmaps([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if s := got[1].Flags.String(); s != "rd wr mr mw me dc ac wf hg sl" {
		t.Errorf("Flags.String() = %q", s)
	}
	if got, err := ParseSmaps(nil); got != nil || err != nil {
		t.Errorf("ParseSmaps(nil) = %v, %v; want nothing", got, err)
	}
}

// TestParseSmapsCapture checks a capture of sleep against its own maps lines.
func TestParseSmapsCapture(t *testing.T) {
	b := readSeed(t, "smaps-sleep.txt")
	var header []byte
	for line := range bytes.Lines(b) {
		if line[0] >= '0' && line[0] <= '9' || line[0] >= 'a' && line[0] <= 'f' {
			header = append(header, line...)
		}
	}
	maps, err := ParseMaps(header)
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := ParseSmaps(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(smaps) != len(maps) || len(maps) < 10 {
		t.Fatalf("%d smaps entries, %d maps lines", len(smaps), len(maps))
	}
	for i, e := range smaps {
		if e.Mapping != maps[i] {
			t.Errorf("entry %d: %+v, maps line says %+v", i, e.Mapping, maps[i])
		}
		if e.Rss > e.Size() || e.Anonymous > e.Rss || e.Flags == 0 || e.OtherFlags != nil {
			t.Errorf("entry %d: implausible %+v", i, e)
		}
		switch e.Path {
		case "[stack]":
			if e.Flags&VmGrowsDown == 0 {
				t.Errorf("stack flags %v", e.Flags)
			}
		case "[vvar]", "[vvar_vclock]":
			if want := VmPfnMap | VmIO | VmDontDump; e.Flags&want != want {
				t.Errorf("%s flags %v", e.Path, e.Flags)
			}
		}
	}
}

func TestParseSmapsErrors(t *testing.T) {
	head := "7f00-7f10 r--p 00000000 00:00 0\n"
	for _, in := range []string{
		"Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nVmFlags: rd\n",
		head + "Rss: 0\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: x kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: 18014398509481984 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: 0 kB\nRss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\ngarbage\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n: x\n",
		"7f10-7f00 r--p 00000000 00:00 0\nRss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd\n",
		head + "Rss: 0 kB\nAnonymous: 0 kB\nSwap: 0 kB\nProtectionKey: -1\nVmFlags: rd\n",
	} {
		if e, err := ParseSmaps([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseSmaps(%q) = %v, %v; want ErrSyntax", in, e, err)
		}
	}
}

// TestReadSmapsSelf maps memory with madvise flags, touches some of it and
// finds both in the smaps of the test process.
func TestReadSmapsSelf(t *testing.T) {
	ps := os.Getpagesize()
	mem := mmap(t, 8*ps)
	if err := unix.Madvise(mem, unix.MADV_DONTFORK); err != nil {
		t.Fatal(err)
	}
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{0, 3, 7} {
		mem[p*ps] = 1
	}
	mem2 := mmap(t, 2*ps)
	if err := unix.Madvise(mem2, unix.MADV_WIPEONFORK); err != nil {
		t.Fatal(err)
	}
	if err := unix.Madvise(mem2, unix.MADV_DONTDUMP); err != nil {
		t.Fatal(err)
	}
	smaps, err := ReadSmaps(0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]VmFlags{
		addr(mem):  VmRead | VmWrite | VmDontCopy | VmNoHugePage,
		addr(mem2): VmRead | VmWrite | VmWipeOnFork | VmDontDump,
	}
	for _, e := range smaps {
		f, ok := want[e.Start]
		if !ok {
			continue
		}
		delete(want, e.Start)
		if e.Flags&f != f {
			t.Errorf("%#x: flags %v, want %v", e.Start, e.Flags, f)
		}
		if e.Start == addr(mem) {
			if e.Size() != uint64(8*ps) || e.Rss != uint64(3*ps) || e.Anonymous != e.Rss {
				t.Errorf("%#x: size %d, rss %d, anonymous %d", e.Start, e.Size(), e.Rss, e.Anonymous)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("mappings not found: %v", want)
	}
}

// TestReadSmapsStreams parses smaps read an entry at a time, through a
// buffer shorter than its lines, as ParseSmaps parses it whole.
func TestReadSmapsStreams(t *testing.T) {
	for _, in := range [][]byte{readSeed(t, "smaps-sleep.txt"), []byte(smapsVvar)} {
		want, err := ParseSmaps(in)
		if err != nil {
			t.Fatal(err)
		}
		var got []SmapsEntry
		err = scanSmaps(bufio.NewReaderSize(bytes.NewReader(in), 16), func(e *SmapsEntry) error {
			got = append(got, *e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("streamed smaps differ (-whole +streamed):\n%s", diff)
		}
	}
	if err := scanSmaps(bufio.NewReader(strings.NewReader("not smaps\n")), func(*SmapsEntry) error { return nil }); !errors.Is(err, ErrSyntax) {
		t.Errorf("bad smaps: got %v, want ErrSyntax", err)
	}
}

// mmap maps private anonymous memory for the test.
func mmap(t *testing.T, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

func addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func FuzzParseSmaps(f *testing.F) {
	f.Add(readSeed(f, "smaps-sleep.txt"))
	f.Add([]byte(smapsVvar))
	f.Fuzz(func(t *testing.T, b []byte) {
		smaps, err := ParseSmaps(b)
		if checkFuzzErr(t, err) {
			return
		}
		for _, e := range smaps {
			if e.End <= e.Start || e.Rss%1024 != 0 {
				t.Fatalf("implausible entry %+v", e)
			}
		}
	})
}
