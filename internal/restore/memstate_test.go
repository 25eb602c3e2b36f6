package restore_test

import (
	stdcmp "cmp"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// startMemstate starts test/subjects/memstate.c with the given modes, in
// a directory of its own.
func startMemstate(t *testing.T, modes ...string) *subject {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "memstate.c"), append([]string{dir}, modes...)...), dir: dir}
}

// TestMemoryState checkpoints and restores a subject holding one kind of
// memory or process state: the subject checks it from inside at every
// tick, before and after, and the test compares what /proc shows of it
// before the dump and after the restore, and what the images say.
func TestMemoryState(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		mode string
		// state is what /proc shows of the state, which the restore must
		// give back.
		state func(t *testing.T, s *subject) string
		// image checks the images.
		image func(t *testing.T, s *subject, im *images)
		// after, if set, acts on the restored subject before its state
		// is compared.
		after func(t *testing.T, s *subject)
	}{
		{mode: "lock", state: lockedState, image: func(t *testing.T, s *subject, im *images) {
			// Adjacent locked VMAs may have merged: page by page.
			locked, half := s.ReadyUint(t, "locked"), s.ReadyUint(t, "halflocked")
			for i := range uint64(4) {
				for _, p := range []struct {
					addr uint64
					want bool
				}{{locked + i*pageSize, true}, {half + i*pageSize, i >= 2}} {
					if v := vmaAt(t, im, p.addr); (v.GetFlags()&unix.MAP_LOCKED != 0) != p.want {
						t.Errorf("page %#x in VMA %#x-%#x flags %#x, want locked %v", p.addr, v.GetStart(), v.GetEnd(), v.GetFlags(), p.want)
					}
				}
			}
		}},
		{mode: "guard", state: guardState, image: func(t *testing.T, s *subject, im *images) {
			g := s.ReadyUint(t, "guarded")
			var got [][2]uint64
			for _, v := range im.mm.Vmas {
				if v.GetStatus()&image.VMAAreaGuard != 0 {
					got = append(got, [2]uint64{v.GetStart() - g, v.GetEnd() - g})
				}
			}
			want := [][2]uint64{{2 * pageSize, 4 * pageSize}, {6 * pageSize, 7 * pageSize}}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("guard entries, relative to the mapping (-want +got):\n%s", d)
			}
		}},
		{mode: "shmsplit", state: sharedState, image: func(t *testing.T, s *subject, im *images) {
			split := s.ReadyUint(t, "shsplit")
			first := vmaAt(t, im, split)
			for i, addr := range []uint64{split, split + pageSize, split + 2*pageSize, s.ReadyUint(t, "shdup")} {
				v := vmaAt(t, im, addr)
				if off := uint64(i%3) * pageSize; v.GetShmid() != first.GetShmid() || v.GetPgoff() != off {
					t.Errorf("VMA at %#x of the split object: shmid %d offset %#x, want %d and %#x", addr, v.GetShmid(), v.GetPgoff(), first.GetShmid(), off)
				}
			}
		}},
		{mode: "fileprot", state: fileProtState, image: func(t *testing.T, s *subject, im *images) {
			for key, want := range map[string]uint32{"rwmap": unix.O_RDWR, "romap": unix.O_RDONLY} {
				v := vmaAt(t, im, s.ReadyUint(t, key))
				if f := im.files[uint32(v.GetShmid())].GetReg(); f.GetFlags()&unix.O_ACCMODE != want {
					t.Errorf("%s: file %s opened with flags %#o, want access mode %#o", key, f.GetName(), f.GetFlags(), want)
				}
			}
		}},
		{mode: "reserve", state: reserveState, image: func(t *testing.T, s *subject, im *images) {
			reserved, sparse, hidden := s.ReadyUint(t, "reserved"), s.ReadyUint(t, "sparse"), s.ReadyUint(t, "hidden")
			want := [][2]uint64{
				{sparse, 1}, {sparse + 123456789*pageSize, 1}, {sparse + (1 << 40) - pageSize, 1},
				{reserved + 3<<40, 4},
			}
			var got [][2]uint64
			hiddenDumped := false
			for _, e := range im.pages {
				if e.Vaddr >= sparse && e.Vaddr < reserved+8<<40 {
					got = append(got, [2]uint64{e.Vaddr, e.NrPages})
				}
				hiddenDumped = hiddenDumped || e.Vaddr <= hidden && hidden+2*pageSize <= e.Vaddr+e.NrPages*pageSize
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("page runs of the reservation and the sparse mapping (-want +got):\n%s", d)
			}
			if !hiddenDumped {
				t.Errorf("the pages of the inaccessible mapping at %#x are not in the image", hidden)
			}
		}},
		// The restore copies the run in windows, some across the VMAs'
		// bounds, which one copy through a userfaultfd may not cross: the
		// subject checks its pattern, the progress check its bytes.
		{mode: "runsplit", state: runsplitState, image: func(t *testing.T, s *subject, im *images) {
			at := s.ReadyUint(t, "runsplit")
			for _, e := range im.pages {
				if e.Vaddr <= at && at+1024*pageSize <= e.Vaddr+e.NrPages*pageSize {
					return
				}
			}
			t.Errorf("no page run holds the 4 MiB at %#x: the test no longer has a run across VMAs", at)
		}},
		// A private mapping of a huge page, written whole: made again of
		// a huge page of the same size, whose contents the subject checks.
		{mode: "hugetlb", state: hugeState, image: func(t *testing.T, s *subject, im *images) {
			const want = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_HUGETLB | 21<<unix.MAP_HUGE_SHIFT
			if v := vmaAt(t, im, s.ReadyUint(t, "huge")); v.GetFlags() != want || v.GetStatus() != image.VMAAreaRegular|image.VMAAnonPrivate {
				t.Errorf("huge page VMA: flags %#x status %#x, want %#x and a private anonymous one", v.GetFlags(), v.GetStatus(), want)
			}
		}},
		// A shared one (PostgreSQL's with huge_pages=on): an object of
		// two huge pages, its second read-only (two VMAs of it), made
		// again with its contents.
		{mode: "hugeshared", state: hugeState, image: func(t *testing.T, s *subject, im *images) {
			const want = unix.MAP_SHARED | unix.MAP_ANONYMOUS | unix.MAP_HUGETLB | 21<<unix.MAP_HUGE_SHIFT
			if v := vmaAt(t, im, s.ReadyUint(t, "huge")); v.GetFlags() != want || v.GetStatus() != image.VMAAreaRegular|image.VMAAnonShared {
				t.Errorf("huge page VMA: flags %#x status %#x, want %#x and a shared anonymous one", v.GetFlags(), v.GetStatus(), want)
			}
		}},
		// Three AIO contexts, two holding completed events not reaped,
		// one of them across the end of its ring: the subject checks
		// them in its rings at every tick, then reaps them when told,
		// and makes round trips through every context.
		{mode: "aio", state: aioState, image: func(t *testing.T, s *subject, im *images) {
			want := []*pb.AioRingEntry{
				{Id: s.ReadyUint(t, "aio0"), NrReq: 62, RingLen: pageSize},
				{Id: s.ReadyUint(t, "aio1"), NrReq: 254, RingLen: 4 * pageSize},
				{Id: s.ReadyUint(t, "aio2"), NrReq: 62, RingLen: pageSize},
			}
			// In the order of their addresses, as the VMAs.
			slices.SortFunc(want, func(a, b *pb.AioRingEntry) int { return stdcmp.Compare(a.Id, b.Id) })
			if d := cmp.Diff(want, im.mm.Aios); d != "" {
				t.Errorf("aios of the mm image (-want +got):\n%s", d)
			}
			for _, a := range want {
				if v := vmaAt(t, im, a.Id); v.GetStart() != a.Id || v.GetEnd() != a.Id+uint64(a.RingLen) || v.GetStatus() != image.VMAAreaAIORing || v.GetFlags() != unix.MAP_SHARED {
					t.Errorf("ring VMA %#x-%#x status %#x flags %#x, want %#x-%#x of VMA_AREA_AIORING, MAP_SHARED", v.GetStart(), v.GetEnd(), v.GetStatus(), v.GetFlags(), a.Id, a.Id+uint64(a.RingLen))
				}
				if magic := binary.LittleEndian.Uint32(im.read(t, a.Id+16, 4)); magic != 0xa10a10a1 {
					t.Errorf("ring %#x: magic %#x in the pages image", a.Id, magic)
				}
			}
		}, after: func(t *testing.T, s *subject) {
			if err := os.WriteFile(filepath.Join(s.dir, "aio.reap"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s.WaitLine(t, "aio reaped 3")
		}},
		{mode: "oom", state: func(t *testing.T, s *subject) string { return readProc(t, s.Pid, "oom_score_adj") },
			image: func(t *testing.T, s *subject, im *images) {
				if got := im.cores[uint32(s.Pid)].Tc.GetOomScoreAdj(); got != 400 {
					t.Errorf("oom_score_adj %d in the image, want 400", got)
				}
			}},
		{mode: "membarrier", state: func(t *testing.T, s *subject) string { return s.Ready["barriers"] },
			image: func(t *testing.T, s *subject, im *images) {
				tc := im.cores[uint32(s.Pid)].Tc
				if tc.MembarrierRegistrationMask == nil {
					t.Skip("this kernel cannot tell membarrier registrations (Linux < 6.3)")
				}
				if got, want := tc.GetMembarrierRegistrationMask(), uint32(s.ReadyUint(t, "barriers")); got != want || got == 0 {
					t.Errorf("membarrier registrations %#x in the image, want %#x", got, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			if strings.HasPrefix(tt.mode, "huge") {
				testutil.ReserveHugePages(t, 2)
			}
			s := startMemstate(t, tt.mode)
			s.WaitTicks(t, 2)
			before := tt.state(t, s)
			c := dumpAndReap(t, s)
			tt.image(t, s, c.im)
			restoreSubject(t, s, c, restore.Options{})
			if tt.after != nil {
				tt.after(t, s)
			}
			s.WaitTicks(t, 5)
			if d := cmp.Diff(before, tt.state(t, s)); d != "" {
				t.Errorf("%s state after the restore (-before +after):\n%s", tt.mode, d)
			}
		})
	}
}

// aioState describes the VMAs of the subject's AIO rings: their place,
// size, protection, flags and name (their files are new ones).
func aioState(t *testing.T, s *subject) string {
	t.Helper()
	var b strings.Builder
	for _, key := range []string{"aio0", "aio1", "aio2"} {
		at := s.ReadyUint(t, key)
		for _, e := range smaps(t, s.Pid) {
			if e.Start == at {
				fmt.Fprintf(&b, "%s %x-%x %s %s %s\n", key, e.Start, e.End, e.Perms, e.Flags, e.Path)
			}
		}
	}
	if strings.Count(b.String(), "/[aio] (deleted)") != 3 {
		t.Fatalf("AIO rings:\n%s", b.String())
	}
	return b.String()
}

// reserveState describes the VMAs of the subject's reservation, sparse
// mapping and inaccessible mapping: their protection, flags (a restore
// must not give them MAP_NORESERVE, which changes how the kernel charges
// them) and resident memory (nor fill them).
func reserveState(t *testing.T, s *subject) string {
	t.Helper()
	reserved, sparse, hidden := s.ReadyUint(t, "reserved"), s.ReadyUint(t, "sparse"), s.ReadyUint(t, "hidden")
	var b strings.Builder
	for _, e := range smaps(t, s.Pid) {
		if e.End > sparse && e.Start < reserved+8<<40 || e.Start == hidden {
			fmt.Fprintf(&b, "%x-%x %s %s rss %d\n", e.Start, e.End, e.Perms, e.Flags, e.Rss)
		}
	}
	return b.String()
}

// hugeState describes the VMAs of the subject's huge pages: their
// place, size, protection, flags and page size.
func hugeState(t *testing.T, s *subject) string {
	t.Helper()
	at := s.ReadyUint(t, "huge")
	var b strings.Builder
	for _, e := range smaps(t, s.Pid) {
		if e.Start >= at && e.Start < at+4<<20 {
			fmt.Fprintf(&b, "%#x %#x %s %s page %d\n", e.Start-at, e.End-e.Start, e.Perms, e.Flags, e.KernelPageSize)
		}
	}
	if b.Len() == 0 {
		t.Fatalf("no VMA at %#x", at)
	}
	return b.String()
}

func runsplitState(t *testing.T, s *subject) string {
	t.Helper()
	at := s.ReadyUint(t, "runsplit")
	var b strings.Builder
	for _, e := range smaps(t, s.Pid) {
		if e.Start >= at && e.End <= at+1024*pageSize {
			fmt.Fprintf(&b, "%x-%x %s %s rss %d\n", e.Start-at, e.End-at, e.Perms, e.Flags, e.Rss)
		}
	}
	return b.String()
}

// vmaAt returns the image's VMA that holds addr.
func vmaAt(t *testing.T, im *images, addr uint64) *pb.VmaEntry {
	t.Helper()
	for _, v := range im.mm.Vmas {
		if v.GetStatus()&image.VMAAreaGuard == 0 && v.GetStart() <= addr && addr < v.GetEnd() {
			return v
		}
	}
	t.Fatalf("no VMA holds %#x in the image", addr)
	return nil
}

func readProc(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(proc.Path(pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func smaps(t *testing.T, pid int) []proc.SmapsEntry {
	t.Helper()
	s, err := proc.ReadSmaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lockedState lists the locked memory of the subject, and how much it has
// locked.
func lockedState(t *testing.T, s *subject) string {
	t.Helper()
	// Adjacent VMAs that differ in nothing but their anon_vma do not
	// merge, and a restore may make them one: locked ranges, joined.
	var ranges [][2]uint64
	for _, e := range smaps(t, s.Pid) {
		if e.Flags&proc.VmLocked == 0 {
			continue
		}
		if n := len(ranges); n > 0 && ranges[n-1][1] == e.Start {
			ranges[n-1][1] = e.End
		} else {
			ranges = append(ranges, [2]uint64{e.Start, e.End})
		}
	}
	var b strings.Builder
	for _, r := range ranges {
		fmt.Fprintf(&b, "%x-%x locked\n", r[0], r[1])
	}
	for _, line := range strings.Split(readProc(t, s.Pid, "status"), "\n") {
		if strings.HasPrefix(line, "VmLck:") {
			b.WriteString(strings.Join(strings.Fields(line), " "))
		}
	}
	if !strings.Contains(b.String(), "VmLck: 24 kB") {
		t.Fatalf("the subject has not 6 pages locked:\n%s", b.String())
	}
	return b.String()
}

// guardState lists the guard pages of the subject's guarded mapping.
func guardState(t *testing.T, s *subject) string {
	t.Helper()
	g := s.ReadyUint(t, "guarded")
	f, err := os.Open(proc.Path(s.Pid, "pagemap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runs, err := proc.NewPagemapReader(f, []proc.PageRange{{Start: g, End: g + 8*pageSize}}).Runs(g, g+8*pageSize, proc.PageGuard)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 {
		t.Skip("the pagemap shows no guard regions (Linux < 6.15)")
	}
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "guard pages %d-%d\n", (r.Addr-g)/pageSize, (r.Addr-g)/pageSize+r.Pages)
	}
	return b.String()
}

// sharedState describes the VMAs of the subject's two shared anonymous
// objects, one mapped twice: their protection, offset, and which object
// each maps.
func sharedState(t *testing.T, s *subject) string {
	t.Helper()
	split, dup, tail := s.ReadyUint(t, "shsplit"), s.ReadyUint(t, "shdup"), s.ReadyUint(t, "shtail")
	objects := map[uint64]int{}
	var b strings.Builder
	for _, e := range smaps(t, s.Pid) {
		if !(e.Start >= split && e.End <= split+3*pageSize) && e.Start != dup && !(e.Start >= tail && e.End <= tail+2*pageSize) {
			continue
		}
		if _, ok := objects[e.Inode]; !ok {
			objects[e.Inode] = len(objects)
		}
		fmt.Fprintf(&b, "%x-%x %s offset %#x object %d %s\n", e.Start, e.End, e.Perms, e.Offset, objects[e.Inode], e.Path)
	}
	if len(objects) != 2 {
		t.Errorf("the subject maps %d shared objects, want 2:\n%s", len(objects), b.String())
	}
	return b.String()
}

// fileProtState describes the subject's two shared file mappings: their
// protection and whether they may become writable.
func fileProtState(t *testing.T, s *subject) string {
	t.Helper()
	var b strings.Builder
	for _, key := range []string{"rwmap", "romap"} {
		addr := s.ReadyUint(t, key)
		for _, e := range smaps(t, s.Pid) {
			if e.Start == addr {
				fmt.Fprintf(&b, "%s %s %s may write %v\n", key, e.Perms, filepath.Base(e.Path), e.Flags&proc.VmMayWrite != 0)
			}
		}
	}
	if !strings.Contains(b.String(), "rwmap r--s rw.dat may write true") || !strings.Contains(b.String(), "romap r--s ro.dat may write false") {
		t.Fatalf("shared file mappings:\n%s", b.String())
	}
	return b.String()
}
