package dump_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// What test/subjects/sink.c holds; the two must agree.
const (
	pageSize      = 4096
	anonTouched   = 32 // pages of the anonymous area with the pattern
	filePages     = 8
	guardPages    = 4
	madvPages     = 8
	heapBytes     = 64 << 10
	sbrkBytes     = 2 * pageSize
	altstackBytes = 64 << 10
	regPos        = 1234
	itimerSec     = 3600
	// checkEvery is how many ticks the sink gives each thread to show
	// progress: waiting this many more ticks lets at least one check run.
	checkEvery = 25

	seedAnon     = 0xa11ce000
	seedShared   = 0x5a4ed000
	seedFile     = 0xf11e0000
	seedCOW      = 0xc0c00000
	seedGuard    = 0x6a4d0000
	seedDontfork = 0xd0f00000
	seedHuge     = 0x4a6e0000
	seedNohuge   = 0x404a0000
	seedWipe     = 0x3b1e0000
	seedHeap     = 0x4ea90000
	seedSbrk     = 0x5b4c0000

	ghostData = "the contents of a file that was unlinked while open\n"
	pipeData  = "unread data in a pipe"
	fifoData  = "unread data in a FIFO"
)

// cowPages are the pages of the private file mapping that the sink wrote
// to; it only read the others.
var cowPages = []int{1, 5}

// pattern returns n bytes of the sink's pattern of seed: 32-bit word i
// holds i*2654435761^seed.
func pattern(seed uint32, n int) []byte {
	b := make([]byte, n)
	for i := range n / 4 {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(i)*2654435761^seed)
	}
	return b
}

// sink is a running test/subjects/sink.c.
type sink struct {
	*testutil.Subject
	dir string // where it made its files
}

func startSink(t *testing.T, args ...string) *sink {
	t.Helper()
	return startSinkBinary(t, testutil.BuildC(t, "sink.c"), args...)
}

func startSinkBinary(t *testing.T, bin string, args ...string) *sink {
	t.Helper()
	// The kernel reports resolved paths.
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &sink{testutil.StartSubject(t, bin, append([]string{dir}, args...)...), dir}
}

// addr returns an address or size from the sink's ready line.
func (s *sink) addr(t *testing.T, key string) uint64 { t.Helper(); return s.ReadyUint(t, key) }

// fd returns a descriptor number from the sink's ready line.
func (s *sink) fd(t *testing.T, key string) uint32 { t.Helper(); return uint32(s.ReadyUint(t, key)) }

// dumped is one dump and what the test saw of its target around it.
type dumped struct {
	pid   int
	dir   string
	stats *dump.Stats
	log   *bytes.Buffer
	// tasks and maps of the target just before the dump and, with
	// LeaveRunning, just after it.
	tasksBefore, tasksAfter []int
	mapsBefore, mapsAfter   []proc.Mapping
}

// newLog returns a logger into a buffer, to show with a failure or to
// look into.
func newLog() (*clog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return clog.New(&buf, clog.LevelDebug), &buf
}

// dumpProcess dumps pid into a new directory and fails the test if the
// dump fails.
func dumpProcess(t *testing.T, pid int, leaveRunning bool) *dumped {
	t.Helper()
	log, buf := newLog()
	d := &dumped{pid: pid, dir: filepath.Join(t.TempDir(), "images"), log: buf}
	d.tasksBefore = readTasks(t, pid)
	d.mapsBefore = readMaps(t, pid)
	st, err := dump.Dump(context.Background(), dump.Options{Pid: pid, Dir: d.dir, LeaveRunning: leaveRunning, Log: log})
	if err != nil {
		t.Fatalf("dump: %v\nlog:\n%s", err, buf)
	}
	d.stats = st
	if leaveRunning {
		d.tasksAfter = readTasks(t, pid)
		d.mapsAfter = readMaps(t, pid)
	}
	return d
}

func readTasks(t *testing.T, pid int) []int {
	t.Helper()
	tids, err := proc.ReadTasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tids)
	return tids
}

// expectRefused dumps s, which must be refused (ErrUnsupported) with an
// error that says each of want, and leaves s as it was: its mappings the
// same, and it goes on ticking.
func expectRefused(t *testing.T, s *testutil.Subject, opts dump.Options, want ...string) {
	t.Helper()
	maps := readMaps(t, s.Pid)
	opts.Pid, opts.Dir = s.Pid, filepath.Join(t.TempDir(), "images")
	_, err := dump.Dump(context.Background(), opts)
	if !errors.Is(err, dump.ErrUnsupported) {
		t.Fatalf("dump: %v, want ErrUnsupported", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	t.Logf("refused: %v", err)
	if after := readMaps(t, s.Pid); !slices.Equal(maps, after) {
		t.Errorf("the refused dump changed the mappings")
	}
	s.WaitTicks(t, 3)
}

func readMaps(t *testing.T, pid int) []proc.Mapping {
	t.Helper()
	m, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mapping returns the target's mapping named path ("[vdso]"...), failing
// the test if it has none.
func (d *dumped) mapping(t *testing.T, path string) proc.Mapping {
	t.Helper()
	for _, m := range d.mapsBefore {
		if m.Path == path {
			return m
		}
	}
	t.Fatalf("pid %d has no %s mapping", d.pid, path)
	return proc.Mapping{}
}

// images is the contents of an image directory of a one-process dump.
type images struct {
	dir    *image.Dir
	pstree *pb.PstreeEntry
	mm     *pb.MmEntry
	cores  map[uint32]*pb.CoreEntry   // by TID
	files  map[uint32]*pb.FileEntry   // by id
	fds    map[uint32]*pb.FdinfoEntry // by descriptor number
	remaps []*pb.RemapFilePathEntry
	pages  []image.PageEntry
	pr     *image.PageReader
}

// readImages reads the images of process pid in dir.
func readImages(t *testing.T, dir string, pid int) *images {
	t.Helper()
	c := testutil.ReadCheckpoint(t, dir, pid)
	im := &images{dir: c.Dir, pstree: c.Pstree, mm: c.MM, cores: c.Cores, files: c.Files,
		fds: map[uint32]*pb.FdinfoEntry{}, pages: c.Pages, pr: c.Pagemap}
	fds, err := image.ReadAll[pb.FdinfoEntry](c.Dir, image.Fdinfo, uint32(pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fds {
		im.fds[f.GetFd()] = f
	}
	if im.remaps, err = image.ReadAll[pb.RemapFilePathEntry](c.Dir, image.RemapFpath, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return im
}

func (im *images) leader() *pb.CoreEntry { return im.cores[im.pstree.GetPid()] }

// pagesIn counts the stored pages in [start, end).
func (im *images) pagesIn(start, end uint64) uint64 {
	var n uint64
	for _, e := range im.pages {
		lo, hi := max(start, e.Vaddr), min(end, e.Vaddr+e.NrPages*pageSize)
		if lo < hi && e.Flags&image.PEPresent != 0 {
			n += (hi - lo) / pageSize
		}
	}
	return n
}

// read returns the stored contents of [addr, addr+n), failing the test if
// a page of it is not stored.
func (im *images) read(t *testing.T, addr uint64, n int) []byte {
	t.Helper()
	b := make([]byte, 0, n)
	for len(b) < n {
		a := addr + uint64(len(b))
		i := slices.IndexFunc(im.pages, func(e image.PageEntry) bool {
			return e.Flags&image.PEPresent != 0 && a >= e.Vaddr && a < e.Vaddr+e.NrPages*pageSize
		})
		if i < 0 {
			t.Fatalf("page %#x is not in the images", a)
		}
		e := im.pages[i]
		chunk := make([]byte, min(uint64(n-len(b)), e.Vaddr+e.NrPages*pageSize-a))
		if _, err := im.pr.Data(e).ReadAt(chunk, int64(a-e.Vaddr)); err != nil {
			t.Fatalf("read page %#x: %v", a, err)
		}
		b = append(b, chunk...)
	}
	return b
}

// vma returns the VMA that holds addr, failing the test if none does.
func (im *images) vma(t *testing.T, addr uint64) *pb.VmaEntry {
	t.Helper()
	for _, v := range im.mm.Vmas {
		if addr >= v.GetStart() && addr < v.GetEnd() {
			return v
		}
	}
	t.Fatalf("no VMA holds %#x", addr)
	return nil
}

// file returns the file entry of descriptor fd, failing the test if there
// is none.
func (im *images) file(t *testing.T, fd uint32) *pb.FileEntry {
	t.Helper()
	e, ok := im.fds[fd]
	if !ok {
		t.Fatalf("no fdinfo entry for fd %d", fd)
	}
	f, ok := im.files[e.GetId()]
	if !ok {
		t.Fatalf("fd %d: no file entry %d", fd, e.GetId())
	}
	if f.GetType() != e.GetType() {
		t.Errorf("fd %d: fdinfo type %v, file entry type %v", fd, e.GetType(), f.GetType())
	}
	return f
}

// withPayloads reads an image of records followed by raw bytes.
func withPayloads[T any, M interface {
	*T
	pb.Message
}](t *testing.T, d *image.Dir, k image.Kind, id uint32) (recs []M, data [][]byte) {
	t.Helper()
	r, err := d.Open(k, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		m := M(new(T))
		if err := r.Next(m); err == io.EOF {
			return recs, data
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r.Payload())
		if err != nil {
			t.Fatal(err)
		}
		recs, data = append(recs, m), append(data, b)
	}
}

// sigaction returns the action of sig in a task core: the image lists
// signals 1 to 64 but SIGKILL and SIGSTOP, as CRIU does.
func sigaction(t *testing.T, tc *pb.TaskCoreEntry, sig unix.Signal) (handler, flags uint64) {
	t.Helper()
	if n := len(tc.Sigactions); n != 62 {
		t.Fatalf("%d sigactions, want 62 (signals 1-64 but SIGKILL and SIGSTOP)", n)
	}
	i := int(sig) - 1
	if sig > unix.SIGKILL {
		i--
	}
	if sig > unix.SIGSTOP {
		i--
	}
	sa := tc.Sigactions[i]
	return sa.GetSigaction(), sa.GetFlags()
}

func sigbit(s unix.Signal) uint64 { return 1 << (s - 1) }

// sigaction flags, which x/sys/unix lacks.
const (
	saSiginfo = 0x4
	saOnstack = 0x08000000
	saRestart = 0x10000000
	ssDisable = 2 // sigaltstack's SS_DISABLE
)

// critDecode checks that Debian's crit, an independent decoder, reads
// every image but the raw pages and cryo's own images, whose magics crit
// does not know (image.Kind.Own).
func critDecode(t *testing.T, dir string) {
	t.Helper()
	crit, err := exec.LookPath("crit")
	if err != nil {
		t.Fatalf("crit (Debian package criu) is needed to check the images: %v", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.img"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, n := range names {
		if base := filepath.Base(n); strings.HasPrefix(base, "pages-") || base == image.FileStats.FileName(0) || base == image.SockExtras.FileName(0) || base == image.ThreadExtras.FileName(0) {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var stderr bytes.Buffer
			cmd := exec.Command(crit, "decode", "-i", n)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			switch {
			case err != nil:
				t.Errorf("crit decode -i %s: %v\n%s", filepath.Base(n), err, stderr.Bytes())
			case !json.Valid(out):
				t.Errorf("crit decode -i %s: not JSON:\n%s", filepath.Base(n), out)
			}
		})
	}
	wg.Wait()
}

// ownVDSO returns the bytes of the test process's vDSO: the kernel gives
// every process the same one.
func ownVDSO(t *testing.T) []byte {
	t.Helper()
	for _, m := range readMaps(t, os.Getpid()) {
		if m.Path != "[vdso]" {
			continue
		}
		f, err := os.Open("/proc/self/mem")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, m.Size())
		if _, err := f.ReadAt(b, int64(m.Start)); err != nil {
			t.Fatalf("read own [vdso]: %v", err)
		}
		return b
	}
	t.Fatal("the test process has no [vdso]")
	return nil
}

// checkImages checks what every dump of a running process must hold.
func checkImages(t *testing.T, d *dumped, im *images, glibc bool) {
	t.Helper()
	// The process and its threads: the dump cannot have seen a thread
	// that was in neither listing nor missed one that was in both.
	if got := im.pstree.GetPid(); got != uint32(d.pid) {
		t.Errorf("pstree pid %d, want %d", got, d.pid)
	}
	threads := make([]int, 0, len(im.pstree.Threads))
	for _, tid := range im.pstree.Threads {
		threads = append(threads, int(tid))
	}
	if len(threads) == 0 || threads[0] != d.pid {
		t.Errorf("pstree threads %v do not start with the leader %d", threads, d.pid)
	}
	slices.Sort(threads)
	after := d.tasksAfter
	if after == nil {
		after = d.tasksBefore // the target is gone
	}
	for _, tid := range d.tasksBefore {
		if slices.Contains(after, tid) && !slices.Contains(threads, tid) {
			t.Errorf("thread %d, alive before and after the dump, is not in pstree threads %v", tid, threads)
		}
	}
	for _, tid := range threads {
		if !slices.Contains(d.tasksBefore, tid) && !slices.Contains(after, tid) {
			t.Errorf("pstree thread %d was never a thread of pid %d (%v, then %v)", tid, d.pid, d.tasksBefore, after)
		}
	}
	if d.stats.Threads != len(threads) {
		t.Errorf("stats say %d threads, pstree %d", d.stats.Threads, len(threads))
	}
	// One core image per thread, no other.
	cores, _ := filepath.Glob(filepath.Join(d.dir, "core-*.img"))
	var want []string
	for _, tid := range threads {
		want = append(want, filepath.Join(d.dir, fmt.Sprintf("core-%d.img", tid)))
	}
	slices.Sort(cores)
	slices.Sort(want)
	if diff := cmp.Diff(want, cores); diff != "" {
		t.Errorf("core images (-want +got):\n%s", diff)
	}
	// Images hold the process's secrets.
	st, err := os.Stat(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("image directory mode %v, want 0700", st.Mode())
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a regular file with mode 0600", e.Name(), info.Mode())
		}
	}
	if im.leader().GetTc() == nil || im.leader().GetIds() == nil {
		t.Errorf("the leader's core has no task core or ids")
	}

	// The special mappings: one [vdso] with all its pages, which are the
	// kernel's vDSO; one vvar entry over [vvar] and [vvar_vclock] without
	// pages; no [vsyscall].
	vdsoMap := d.mapping(t, "[vdso]")
	vvarStart, vvarEnd := d.mapping(t, "[vvar]").Start, d.mapping(t, "[vvar]").End
	for _, m := range d.mapsBefore {
		if m.Path == "[vvar_vclock]" {
			vvarEnd = m.End
		}
	}
	var vdsos, vvars []*pb.VmaEntry
	for _, v := range im.mm.Vmas {
		if v.GetStatus()&image.VMAAreaVDSO != 0 {
			vdsos = append(vdsos, v)
		}
		if v.GetStatus()&image.VMAAreaVVAR != 0 {
			vvars = append(vvars, v)
		}
		if v.GetStart() == 0xffffffffff600000 || v.GetStatus()&image.VMAAreaVsyscall != 0 {
			t.Errorf("[vsyscall] dumped: %v", v)
		}
	}
	if len(vdsos) != 1 || vdsos[0].GetStart() != vdsoMap.Start || vdsos[0].GetEnd() != vdsoMap.End {
		t.Errorf("VDSO VMAs %v, want one at %#x-%#x", vdsos, vdsoMap.Start, vdsoMap.End)
	} else if got := im.read(t, vdsoMap.Start, int(vdsoMap.Size())); !bytes.Equal(got, ownVDSO(t)) {
		t.Errorf("the dumped [vdso] differs from the kernel's")
	}
	if len(vvars) != 1 || vvars[0].GetStart() != vvarStart || vvars[0].GetEnd() != vvarEnd {
		t.Errorf("VVAR VMAs %v, want one at %#x-%#x", vvars, vvarStart, vvarEnd)
	}
	if n := im.pagesIn(vvarStart, vvarEnd); n != 0 {
		t.Errorf("%d pages of [vvar] dumped", n)
	}

	// The VMAs are the process's mappings, but for those merged or left
	// out above; compared only when the mappings did not change meanwhile
	// (a Go program maps memory at any time).
	if d.mapsAfter == nil || slices.Equal(d.mapsBefore, d.mapsAfter) {
		type area struct {
			Start, End uint64
			Prot       uint32
		}
		var want, got []area
		for _, m := range d.mapsBefore {
			switch {
			case m.Path == "[vsyscall]":
			case m.Path == "[vvar_vclock]":
				want[len(want)-1].End = m.End
			default:
				want = append(want, area{m.Start, m.End, protOf(m.Perms)})
			}
		}
		for _, v := range im.mm.Vmas {
			got = append(got, area{v.GetStart(), v.GetEnd(), v.GetProt()})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("VMAs differ from /proc/%d/maps (-maps +image):\n%s", d.pid, diff)
		}
	}
	// Every stored page belongs to a VMA (an entry may span adjacent
	// ones).
	for _, e := range im.pages {
		for a, end := e.Vaddr, e.Vaddr+e.NrPages*pageSize; a < end; {
			a = im.vma(t, a).GetEnd()
		}
	}
	if d.stats.Pages != im.pagesIn(0, ^uint64(0)) {
		t.Errorf("stats say %d pages, the pagemap %d", d.stats.Pages, im.pagesIn(0, ^uint64(0)))
	}

	// Threads: none left inside the vDSO; rseq registrations where glibc
	// makes them.
	if len(im.leader().GetTc().GetSigactions()) != 62 {
		t.Errorf("%d sigactions, want 62", len(im.leader().GetTc().GetSigactions()))
	}
	for tid, c := range im.cores {
		ip := c.GetThreadInfo().GetGpregs().GetIp()
		if ip >= vdsoMap.Start && ip < vdsoMap.End {
			t.Errorf("thread %d dumped inside the vDSO at %#x", tid, ip)
		}
		if glibc && c.GetThreadCore().GetRseqEntry().GetRseqAbiPointer() == 0 {
			t.Errorf("thread %d: no rseq registration recorded", tid)
		}
	}
}

func protOf(perms string) uint32 {
	var p uint32
	if perms[0] == 'r' {
		p |= unix.PROT_READ
	}
	if perms[1] == 'w' {
		p |= unix.PROT_WRITE
	}
	if perms[2] == 'x' {
		p |= unix.PROT_EXEC
	}
	return p
}

// checkSinkImages checks that the images hold each kind of state the sink
// keeps, with the values it set.
func checkSinkImages(t *testing.T, s *sink, im *images) {
	t.Helper()
	// Anonymous memory: the pattern is there; the area never touched is
	// not, and it keeps its flags.
	if got, want := im.read(t, s.addr(t, "pattern"), anonTouched*pageSize), pattern(seedAnon, anonTouched*pageSize); !bytes.Equal(got, want) {
		t.Errorf("the anonymous pattern does not read back from the pages")
	}
	untouched, untouchedLen := s.addr(t, "untouched"), s.addr(t, "untouched_len")
	if n := im.pagesIn(untouched, untouched+untouchedLen); n != 0 {
		t.Errorf("%d never-touched pages dumped", n)
	}
	if v := im.vma(t, untouched); v.GetStart() != untouched || v.GetEnd() != untouched+untouchedLen ||
		v.GetFlags() != unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE || v.GetStatus()&image.VMAAnonPrivate == 0 {
		t.Errorf("never-touched area: VMA %v", v)
	}

	// The guard area keeps the data it had before it became PROT_NONE.
	guard := s.addr(t, "guard")
	if v := im.vma(t, guard); v.GetProt() != unix.PROT_NONE || v.GetEnd()-v.GetStart() != guardPages*pageSize {
		t.Errorf("guard area: VMA %v, want %d pages PROT_NONE", v, guardPages)
	}
	if !bytes.Equal(im.read(t, guard, guardPages*pageSize), pattern(seedGuard, guardPages*pageSize)) {
		t.Errorf("the PROT_NONE area's data does not read back")
	}

	// File mappings: the private one stores its copied pages only, the
	// shared one nothing; both name their file.
	checkFileVMA := func(addr uint64, name string, status, flags uint32) *pb.VmaEntry {
		t.Helper()
		v := im.vma(t, addr)
		if v.GetStatus()&status == 0 || v.GetFlags() != flags || v.GetStart() != addr || v.GetEnd() != addr+filePages*pageSize {
			t.Errorf("%s: VMA %v, want status bit %#x, flags %#x", name, v, status, flags)
		}
		f, ok := im.files[uint32(v.GetShmid())]
		if want := filepath.Join(s.dir, name); !ok || f.GetReg().GetName() != want {
			t.Errorf("%s: VMA file %d is %v, want %s", name, v.GetShmid(), f, want)
		}
		return v
	}
	private := s.addr(t, "private")
	checkFileVMA(private, "private.dat", image.VMAFilePrivate, unix.MAP_PRIVATE)
	for i := range filePages {
		addr := private + uint64(i)*pageSize
		if !slices.Contains(cowPages, i) {
			if n := im.pagesIn(addr, addr+pageSize); n != 0 {
				t.Errorf("page %d of the private file mapping was never written but is dumped", i)
			}
			continue
		}
		if !bytes.Equal(im.read(t, addr, pageSize), pattern(seedCOW, pageSize)) {
			t.Errorf("page %d of the private file mapping (copied on write) does not read back", i)
		}
	}
	shared := s.addr(t, "shared")
	checkFileVMA(shared, "shared.dat", image.VMAFileShared, unix.MAP_SHARED)
	if n := im.pagesIn(shared, shared+filePages*pageSize); n != 0 {
		t.Errorf("%d pages of the shared file mapping dumped; the file holds them", n)
	}

	// madvise bits, and the data of those areas.
	for _, m := range []struct {
		key  string
		madv uint
		seed uint32
		n    int // bytes touched
	}{
		{"dontfork", unix.MADV_DONTFORK, seedDontfork, madvPages * pageSize},
		{"huge", unix.MADV_HUGEPAGE, seedHuge, pageSize},
		{"nohuge", unix.MADV_NOHUGEPAGE, seedNohuge, madvPages * pageSize},
		{"wipe", unix.MADV_WIPEONFORK, seedWipe, madvPages * pageSize},
	} {
		addr := s.addr(t, m.key)
		if v := im.vma(t, addr); v.GetMadv()&(1<<m.madv) == 0 {
			t.Errorf("%s area: madv %#x lacks bit %d", m.key, v.GetMadv(), m.madv)
		}
		if !bytes.Equal(im.read(t, addr, m.n), pattern(m.seed, m.n)) {
			t.Errorf("%s area: data does not read back", m.key)
		}
	}

	// The heap: malloc'ed and sbrk'ed data, and the break.
	if v := im.vma(t, s.addr(t, "heap")); v.GetStatus()&image.VMAAreaHeap == 0 {
		t.Errorf("the heap's VMA %v has no heap status", v)
	}
	if !bytes.Equal(im.read(t, s.addr(t, "heap"), heapBytes), pattern(seedHeap, heapBytes)) {
		t.Errorf("heap data does not read back")
	}
	if !bytes.Equal(im.read(t, s.addr(t, "sbrk"), sbrkBytes), pattern(seedSbrk, sbrkBytes)) {
		t.Errorf("sbrk data does not read back")
	}
	if got, want := im.mm.GetMmBrk(), s.addr(t, "brk"); got != want {
		t.Errorf("brk %#x, want %#x", got, want)
	}

	checkSinkFiles(t, s, im)
	checkSinkSignals(t, s, im)
}

func checkSinkFiles(t *testing.T, s *sink, im *images) {
	t.Helper()
	reg := func(key string) *pb.FileEntry {
		t.Helper()
		f := im.file(t, s.fd(t, key))
		if f.GetType() != pb.FdTypes_REG || f.GetReg() == nil {
			t.Fatalf("fd %s: %v, want a regular file entry", key, f)
		}
		return f
	}
	if r := reg("reg").GetReg(); r.GetName() != filepath.Join(s.dir, "reg.txt") || r.GetPos() != regPos ||
		r.GetFlags()&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("regular file: %v, want %s at position %d, O_RDWR", r, filepath.Join(s.dir, "reg.txt"), regPos)
	}
	if r := reg("dir").GetReg(); r.GetName() != s.dir || r.GetMode()&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("directory: %v, want %s", r, s.dir)
	}
	for key, path := range map[string]string{"null": "/dev/null", "zero": "/dev/zero", "urandom": "/dev/urandom"} {
		if r := reg(key).GetReg(); r.GetName() != path || r.GetMode()&unix.S_IFMT != unix.S_IFCHR {
			t.Errorf("%s: %v", path, r)
		}
	}

	// The unlinked file: its entry is remapped to a ghost file that holds
	// its contents.
	ghost := reg("ghost")
	if name := ghost.GetReg().GetName(); name != filepath.Join(s.dir, "ghost.txt") {
		t.Errorf("unlinked file named %q", name)
	}
	i := slices.IndexFunc(im.remaps, func(r *pb.RemapFilePathEntry) bool { return r.GetOrigId() == ghost.GetId() })
	if i < 0 {
		t.Errorf("no remap-fpath entry for the unlinked file (id %d): %v", ghost.GetId(), im.remaps)
	} else if r := im.remaps[i]; r.GetRemapType() != pb.RemapType_GHOST {
		t.Errorf("unlinked file remapped as %v, want GHOST", r.GetRemapType())
	} else {
		recs, data := withPayloads[pb.GhostFileEntry](t, im.dir, image.GhostFile, r.GetRemapId())
		if len(recs) != 1 || string(data[0]) != ghostData || recs[0].GetSize() != uint64(len(ghostData)) ||
			recs[0].GetMode()&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("ghost file %d: %v with %q, want %q", r.GetRemapId(), recs, data, ghostData)
		}
	}

	// The pipe: both ends share one pipe id, whose data is stored once.
	pr, pw := im.file(t, s.fd(t, "pipe_r")), im.file(t, s.fd(t, "pipe_w"))
	if pr.GetType() != pb.FdTypes_PIPE || pw.GetType() != pb.FdTypes_PIPE || pr.GetPipe().GetPipeId() != pw.GetPipe().GetPipeId() {
		t.Errorf("pipe ends: %v and %v", pr, pw)
	}
	checkPipeData(t, im, image.PipesData, pr.GetPipe().GetPipeId(), pipeData)

	// The FIFO: a FIFO entry on a regular entry for its path, its data in
	// fifo-data.img.
	ff := im.file(t, s.fd(t, "fifo"))
	if ff.GetType() != pb.FdTypes_FIFO || ff.GetFifo() == nil {
		t.Fatalf("FIFO: %v", ff)
	}
	if r, ok := im.files[ff.GetFifo().GetRegfId()]; !ok || r.GetReg().GetName() != filepath.Join(s.dir, "fifo") {
		t.Errorf("FIFO's path entry %d: %v", ff.GetFifo().GetRegfId(), r)
	}
	checkPipeData(t, im, image.FifoData, ff.GetFifo().GetPipeId(), fifoData)
}

// checkPipeData checks that the image of kind k stores want for pipe id,
// once.
func checkPipeData(t *testing.T, im *images, k image.Kind, id uint32, want string) {
	t.Helper()
	recs, data := withPayloads[pb.PipeDataEntry](t, im.dir, k, 0)
	var got []string
	for i, r := range recs {
		if r.GetPipeId() == id {
			got = append(got, string(data[i]))
			if r.GetBytes() != uint32(len(data[i])) || r.GetSize() < r.GetBytes() {
				t.Errorf("%s: entry %v with %d bytes", k, r, len(data[i]))
			}
		}
	}
	if diff := cmp.Diff([]string{want}, got); diff != "" {
		t.Errorf("%s data of pipe %d (-want +got):\n%s", k, id, diff)
	}
}

func checkSinkSignals(t *testing.T, s *sink, im *images) {
	t.Helper()
	leader := im.leader()
	tc := leader.GetTc()
	handler, flags := sigaction(t, tc, unix.SIGUSR1)
	if handler == 0 || flags&saSiginfo == 0 || flags&saRestart == 0 || flags&saOnstack == 0 {
		t.Errorf("SIGUSR1 action: handler %#x flags %#x, want a handler with SA_SIGINFO|SA_RESTART|SA_ONSTACK", handler, flags)
	}
	if handler, _ := sigaction(t, tc, unix.SIGPIPE); handler != 1 {
		t.Errorf("SIGPIPE handler %#x, want SIG_IGN (1)", handler)
	}
	if handler, _ := sigaction(t, tc, unix.SIGUSR2); handler != 0 {
		t.Errorf("SIGUSR2 handler %#x, want SIG_DFL", handler)
	}
	// The main thread blocked SIGUSR2 after starting the others.
	for tid, c := range im.cores {
		blocked := c.GetThreadCore().GetBlkSigset()&sigbit(unix.SIGUSR2) != 0
		if blocked != (c == leader) {
			t.Errorf("thread %d (%s): SIGUSR2 blocked %v, want %v", tid, c.GetThreadCore().GetComm(), blocked, c == leader)
		}
	}
	if tc.GetBlkSigset()&sigbit(unix.SIGUSR2) == 0 {
		t.Errorf("task core blocked set %#x lacks SIGUSR2", tc.GetBlkSigset())
	}
	// Only the main thread has an alternate stack.
	for tid, c := range im.cores {
		sas := c.GetThreadCore().GetSas()
		if c == leader {
			if sas.GetSsSp() != s.addr(t, "altstack") || sas.GetSsSize() != altstackBytes || sas.GetSsFlags() != 0 {
				t.Errorf("main thread's sigaltstack %v, want %#x size %d", sas, s.addr(t, "altstack"), altstackBytes)
			}
		} else if sas.GetSsFlags() != ssDisable {
			t.Errorf("thread %d's sigaltstack %v, want disabled", tid, sas)
		}
	}
	rt := tc.GetTimers().GetReal()
	if rt.GetIsec() != itimerSec || rt.GetIusec() != 0 || rt.GetVsec() > itimerSec || rt.GetVsec()+rt.GetVusec() == 0 {
		t.Errorf("ITIMER_REAL %v, want interval %d s and armed", rt, itimerSec)
	}
	var comms []string
	for _, c := range im.cores {
		if c != leader {
			comms = append(comms, c.GetThreadCore().GetComm())
		}
	}
	slices.Sort(comms)
	if want := []string{"reader", "sleeper", "spinner"}; !slices.Equal(comms, want) {
		t.Errorf("the other threads are named %v, want %v", comms, want)
	}
}

// TestDumpLeaveRunning dumps subjects of every kind and checks that they
// go on, and what the images hold.
func TestDumpLeaveRunning(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name  string
		start func(t *testing.T) (*testutil.Subject, *sink)
		// glibc subjects register rseq in every thread.
		glibc      bool
		minThreads int
	}{
		{"vdsoclock", func(t *testing.T) (*testutil.Subject, *sink) {
			return testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c")), nil
		}, true, 1},
		{"vdsoclock static", func(t *testing.T) (*testutil.Subject, *sink) {
			return testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c", "-static")), nil
		}, true, 1},
		{"goclock", func(t *testing.T) (*testutil.Subject, *sink) {
			return testutil.StartSubject(t, testutil.BuildGo(t, "./test/subjects/goclock")), nil
		}, false, 4},
		{"sink", func(t *testing.T) (*testutil.Subject, *sink) {
			s := startSink(t)
			return s.Subject, s
		}, true, 4},
		{"sink static", func(t *testing.T) (*testutil.Subject, *sink) {
			s := startSinkBinary(t, testutil.BuildC(t, "sink.c", "-static"))
			return s.Subject, s
		}, true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sk := tt.start(t)
			d := dumpProcess(t, s.Pid, true)
			checkNoSnapshot(t, s.Pid)
			if d.stats.Snapshots != 1 {
				t.Errorf("%d snapshots, want 1", d.stats.Snapshots)
			}
			// Past at least one of the sink's thread progress checks.
			s.WaitTicks(t, checkEvery+5)
			critDecode(t, d.dir)
			im := readImages(t, d.dir, s.Pid)
			if n := len(im.pstree.Threads); n < tt.minThreads {
				t.Errorf("%d threads dumped, want at least %d", n, tt.minThreads)
			}
			checkImages(t, d, im, tt.glibc)
			if sk != nil {
				checkSinkImages(t, sk, im)
			}
			if t.Failed() {
				t.Logf("dump log:\n%s", d.log)
			}
		})
	}
}

// TestDumpKills dumps without LeaveRunning: the target dies once the
// images are complete.
func TestDumpKills(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	d := dumpProcess(t, s.Pid, false)
	ws := s.Wait(t)
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("subject ended with %v, want killed by SIGKILL", ws)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.Pid)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pid %d still exists after it was reaped: %v", s.Pid, err)
	}
	if out := s.Output(); strings.Contains(out, "FAIL") {
		t.Errorf("subject failed:\n%s", out)
	}
	critDecode(t, d.dir)
	im := readImages(t, d.dir, s.Pid)
	checkImages(t, d, im, true)
	checkSinkImages(t, s, im)
}

// TestDumpStepsOutOfVDSO dumps a sink, whose spinner thread is inside the
// vDSO most of the time, again and again: no thread may be dumped inside
// it.
func TestDumpStepsOutOfVDSO(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	const dumps = 8
	var stepped, inRead int
	for i := range dumps {
		d := dumpProcess(t, s.Pid, true)
		stepped += strings.Count(d.log.String(), "stepping thread out of the vDSO")
		im := readImages(t, d.dir, s.Pid)
		vdso := d.mapping(t, "[vdso]")
		for tid, c := range im.cores {
			regs := c.GetThreadInfo().GetGpregs()
			if ip := regs.GetIp(); ip >= vdso.Start && ip < vdso.End {
				t.Errorf("dump %d: thread %d (%s) inside the vDSO at %#x", i, tid, c.GetThreadCore().GetComm(), ip)
			}
			// The reader waits in read(), which the freeze interrupted:
			// the registers say to restart it.
			if c.GetThreadCore().GetComm() == "reader" && regs.GetOrigAx() == unix.SYS_READ && int64(regs.GetAx()) == -512 {
				inRead++
			}
		}
		s.WaitTicks(t, 2)
	}
	s.WaitTicks(t, checkEvery+5)
	t.Logf("%d dumps: %d threads stepped out of the vDSO; the reader was in read() %d times", dumps, stepped, inRead)
	if stepped == 0 {
		t.Errorf("no thread was stepped out of the vDSO in %d dumps: the spinner should be inside it most of the time", dumps)
	}
	if inRead == 0 {
		t.Errorf("the reader thread was never dumped inside read() (orig_ax %d, ax -ERESTARTSYS) in %d dumps", unix.SYS_READ, dumps)
	}
}

// checkUnharmed checks that a dump that failed left the sink as it was:
// no tracer, no image, the same mappings (the scratch page is gone), and
// it goes on: ticks, thread progress, a working signal handler.
func checkUnharmed(t *testing.T, s *sink, dir string, mapsBefore []proc.Mapping) {
	t.Helper()
	if !s.Alive() {
		t.Fatalf("subject died:\n%s", s.Output())
	}
	for _, tid := range readTasks(t, s.Pid) {
		st, err := proc.ReadTaskStatus(s.Pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if st.TracerPid != 0 {
			t.Errorf("thread %d still traced by %d", tid, st.TracerPid)
		}
	}
	if imgs, _ := filepath.Glob(filepath.Join(dir, "*.img")); len(imgs) > 0 {
		t.Errorf("images left behind: %v", imgs)
	}
	checkNoSnapshot(t, s.Pid)
	if diff := cmp.Diff(mapsBefore, readMaps(t, s.Pid)); diff != "" {
		t.Errorf("mappings changed (-before +after):\n%s", diff)
	}
	before := s.LastTick()
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, checkEvery+5)
	after := s.LastTick()
	for _, k := range []string{"usr1", "reader", "sleeper", "spinner"} {
		b, _ := strconv.Atoi(before[k])
		a, _ := strconv.Atoi(after[k])
		if a <= b {
			t.Errorf("%s went from %s to %s", k, before[k], after[k])
		}
	}
}

// checkNoSnapshot checks that process pid has no child stopped or dead:
// a snapshot child left alive or unreaped (a child of its own sleeps).
func checkNoSnapshot(t *testing.T, pid int) {
	t.Helper()
	for _, tid := range readTasks(t, pid) {
		b, err := os.ReadFile(proc.Path(pid, fmt.Sprintf("task/%d/children", tid)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(b)) {
			k, _ := strconv.Atoi(f)
			if st, err := proc.ReadStat(k); err == nil && st.State != 'S' && st.State != 'R' {
				t.Errorf("pid %d left with a child %d in state %c", pid, k, st.State)
			}
		}
	}
}

// TestDumpFailureLeavesTargetRunning makes each step of the dump fail in
// turn.
func TestDumpFailureLeavesTargetRunning(t *testing.T) {
	testutil.RequireRoot(t)
	for _, step := range dump.Steps {
		t.Run(step, func(t *testing.T) {
			s := startSink(t)
			dir := filepath.Join(t.TempDir(), "images")
			maps := readMaps(t, s.Pid)
			log, buf := newLog()
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true, Log: log, FailAt: step})
			if !errors.Is(err, dump.ErrInjected) || !strings.Contains(err.Error(), step+": ") {
				t.Errorf("dump failing at %s: %v, want an injected failure naming the step", step, err)
			}
			checkUnharmed(t, s, dir, maps)
			if t.Failed() {
				t.Logf("dump log:\n%s", buf)
			}
		})
	}
}

// TestDumpCancelled cancels a dump in the middle of copying memory.
func TestDumpCancelled(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t, "big=256")
	dir := filepath.Join(t.TempDir(), "images")
	maps := readMaps(t, s.Pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last, total uint64
	log, buf := newLog()
	_, err := dump.Dump(ctx, dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true, Log: log,
		Progress: func(done, all uint64) {
			last, total = done, all
			if done >= all/4 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dump: %v, want context.Canceled", err)
	}
	if total < 256<<20 || last >= total {
		t.Errorf("progress stopped at %d of %d bytes, want part of at least 256 MiB", last, total)
	}
	checkUnharmed(t, s, dir, maps)
	if t.Failed() {
		t.Logf("dump log:\n%s", buf)
	}
}

// TestDumpRefuses checks the targets a dump must refuse, and that it
// leaves them running.
func TestDumpRefuses(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name string
		args []string // of the sink; nil for no subject
		pid  func(t *testing.T) int
		// dir prepares the image directory.
		dir  func(t *testing.T, dir string)
		is   error
		want func(s *sink) []string // substrings of the error
	}{
		{name: "socket", args: []string{"socket"}, is: dump.ErrUnsupported,
			want: func(s *sink) []string { return []string{fmt.Sprintf("fd %s ", s.Ready["socket"]), "UDP-Lite socket"} }},
		{name: "images already there", args: []string{}, is: image.ErrNotEmpty,
			dir: func(t *testing.T, dir string) {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "inventory.img"), []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: func(*sink) []string { return []string{"inventory.img"} }},
		{name: "itself", pid: func(*testing.T) int { return os.Getpid() },
			want: func(*sink) []string { return []string{"cryo itself"} }},
		{name: "no such process", pid: freePid, is: dump.ErrNoProcess,
			want: func(*sink) []string { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s *sink
			var pid int
			var maps []proc.Mapping
			if tt.args != nil {
				s = startSink(t, tt.args...)
				pid = s.Pid
				maps = readMaps(t, pid)
			} else {
				pid = tt.pid(t)
			}
			dir := filepath.Join(t.TempDir(), "images")
			if tt.dir != nil {
				tt.dir(t, dir)
			}
			_, err := dump.Dump(context.Background(), dump.Options{Pid: pid, Dir: dir, LeaveRunning: true})
			if err == nil {
				t.Fatal("dump succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %q", err, tt.is)
			}
			for _, w := range tt.want(s) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Logf("refused: %v", err)
			if tt.dir != nil {
				// The images that were there stay.
				if b, err := os.ReadFile(filepath.Join(dir, "inventory.img")); err != nil || string(b) != "old" {
					t.Errorf("the image already there was touched: %q, %v", b, err)
				}
				os.Remove(filepath.Join(dir, "inventory.img"))
			}
			if s != nil {
				checkUnharmed(t, s, dir, maps)
			}
		})
	}
}

// freePid returns a PID that no process has.
func freePid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for pid := pidMax - 1; pid > 1; pid-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			return pid
		}
	}
	t.Fatal("no free PID")
	return 0
}

// TestDumpUnderSignals dumps a sink that a stream of SIGUSR1s hits
// meanwhile: signals that arrive while it is frozen, or while a system
// call is injected, must reach its handler afterwards.
func TestDumpUnderSignals(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := 0
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Kill(s.Pid, unix.SIGUSR1)
			sent++
			time.Sleep(100 * time.Microsecond)
		}
	})
	for range 5 {
		dumpProcess(t, s.Pid, true)
	}
	close(stop)
	wg.Wait()
	before := s.LastTick()
	s.WaitTicks(t, checkEvery+5)
	t.Logf("sent %d SIGUSR1s; the sink counted %s by then, %s now", sent, before["usr1"], s.LastTick()["usr1"])
	if n, _ := strconv.Atoi(s.LastTick()["usr1"]); n == 0 {
		t.Errorf("the sink handled no SIGUSR1")
	}
}

// TestDumpThreadChurn dumps a sink whose threads come and go all the time:
// the dump must freeze whichever threads there are at that moment.
func TestDumpThreadChurn(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t, "churn")
	// The main thread and four others last; the churner's come and go.
	lasting := []int{s.Pid}
	for _, k := range []string{"reader_tid", "sleeper_tid", "spinner_tid", "churner_tid"} {
		lasting = append(lasting, int(s.ReadyUint(t, k)))
	}
	for i := range 10 {
		dir := filepath.Join(t.TempDir(), "images")
		log, buf := newLog()
		_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: true, Log: log})
		if err != nil {
			t.Fatalf("dump %d: %v\nlog:\n%s", i, err, buf)
		}
		im := readImages(t, dir, s.Pid)
		var threads []int
		for _, tid := range im.pstree.Threads {
			threads = append(threads, int(tid))
			if im.cores[tid] == nil {
				t.Errorf("dump %d: no core for thread %d", i, tid)
			}
		}
		for _, tid := range lasting {
			if !slices.Contains(threads, tid) {
				t.Errorf("dump %d: thread %d missing from %v", i, tid, threads)
			}
		}
	}
	s.WaitTicks(t, checkEvery+5)
}
