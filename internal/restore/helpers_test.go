package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

const pageSize = 4096

// subject is a running test subject and the directory it keeps its files
// in (the sink's; empty for the others).
type subject struct {
	*testutil.Subject
	dir string
}

// subjectKind starts one kind of subject.
type subjectKind struct {
	name  string
	start func(t *testing.T) *subject
	// glibc subjects register rseq and are strict about their maps.
	glibc bool
	// sink: the kitchen-sink subject, whose ready line names its threads.
	sink bool
	// churn: threads start and end at any time.
	churn bool
}

var subjectKinds = []subjectKind{
	{name: "vdsoclock", glibc: true, start: func(t *testing.T) *subject {
		return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))}
	}},
	{name: "vdsoclock-static", glibc: true, start: func(t *testing.T) *subject {
		return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c", "-static"))}
	}},
	{name: "sink", glibc: true, sink: true, start: func(t *testing.T) *subject { return startSink(t) }},
	// Threads that come and go all the time, and 16 MiB of memory in one
	// run of pages, more than one write moves.
	{name: "sink-churn-big", glibc: true, sink: true, churn: true, start: func(t *testing.T) *subject { return startSink(t, "churn", "big=16") }},
	{name: "goclock", start: func(t *testing.T) *subject {
		return &subject{Subject: testutil.StartSubject(t, testutil.BuildGo(t, "./test/subjects/goclock"))}
	}},
}

func kind(t *testing.T, name string) subjectKind {
	t.Helper()
	i := slices.IndexFunc(subjectKinds, func(k subjectKind) bool { return k.name == name })
	if i < 0 {
		t.Fatalf("no subject kind %s", name)
	}
	return subjectKinds[i]
}

// startSink starts test/subjects/sink.c in a directory of its own.
func startSink(t *testing.T, args ...string) *subject {
	t.Helper()
	// The kernel reports resolved paths.
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sink.c"), append([]string{dir}, args...)...), dir: dir}
}

// newLog returns a logger into a buffer, to show with a failure or to
// look into.
func newLog() (*clog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return clog.New(&buf, clog.LevelDebug), &buf
}

// checkpoint is a dump of a subject that killed it, and what the test saw
// of it.
type checkpoint struct {
	dir string
	im  *images
	// lastTick is the last tick the subject printed before the dump.
	lastTick testutil.Tick
	// ticks is how many ticks it had printed.
	ticks int
	// before is what /proc said of the subject when the dump froze it,
	// for the state oracle to compare with the restored process.
	before testutil.State
}

// dumpAndReap dumps s, which the dump kills, reaps it and waits until its
// PID is free.
func dumpAndReap(t *testing.T, s *subject) *checkpoint {
	t.Helper()
	return dumpAndReapWith(t, s, dump.Options{})
}

// dumpAndReapWith is dumpAndReap with dump options (Pid, Dir and Log are
// set here).
func dumpAndReapWith(t *testing.T, s *subject, opts dump.Options) *checkpoint {
	t.Helper()
	// The checks below compare with the last tick before the dump: a
	// subject only just ready has printed none.
	if s.Ticks() == 0 {
		s.WaitTicks(t, 1)
	}
	dir := filepath.Join(t.TempDir(), "images")
	log, buf := newLog()
	var before testutil.State
	opts.Pid, opts.Dir, opts.Log = s.Pid, dir, log
	frozen := opts.Frozen
	opts.Frozen = func() {
		before = testutil.RecordState(t, s.Pid)
		if frozen != nil {
			frozen()
		}
	}
	_, err := dump.Dump(context.Background(), opts)
	if err != nil {
		t.Fatalf("dump pid %d: %v\nlog:\n%s", s.Pid, err, buf)
	}
	if ws := s.ReapDumped(t); !ws.Signaled() {
		t.Fatalf("dumped subject ended with %v, want killed", ws)
	}
	c := &checkpoint{dir: dir, im: readImages(t, dir, s.Pid), before: before}
	ticks := s.TickLines()
	if len(ticks) == 0 {
		t.Fatalf("subject %d printed no tick before the dump", s.Pid)
	}
	c.lastTick, c.ticks = ticks[len(ticks)-1], len(ticks)
	return c
}

// restoreSubject restores c into s's process, failing the test if the
// restore fails or /proc shows the process different from the dumped one
// (the state oracle), and makes s watch the restored process. A Progress
// in opts is called too.
func restoreSubject(t *testing.T, s *subject, c *checkpoint, opts restore.Options) (*restore.Stats, *bytes.Buffer) {
	t.Helper()
	log, buf := newLog()
	opts.Dir, opts.Log = c.dir, log
	// Progress goes up to the total, never past it, and reaches it.
	var done, total uint64
	var progressErr error
	progress := opts.Progress
	opts.Progress = func(d, tot uint64) {
		if d < done || d > tot || total != 0 && tot != total {
			progressErr = errors.Join(progressErr, fmt.Errorf("progress %d of %d after %d of %d", d, tot, done, total))
		}
		done, total = d, tot
		if progress != nil {
			progress(d, tot)
		}
	}
	var after testutil.State
	restored := opts.Restored
	opts.Restored = func(pid int, scratchStart, scratchEnd uint64) {
		if pid == s.Pid {
			after = testutil.RecordState(t, s.Pid, scratchStart, scratchEnd)
		}
		if restored != nil {
			restored(pid, scratchStart, scratchEnd)
		}
	}
	st, err := restore.Restore(context.Background(), opts)
	if err != nil {
		t.Fatalf("restore %s: %v\nlog:\n%s", c.dir, err, buf)
	}
	s.Restored()
	if c.before != nil {
		testutil.CompareStates(t, c.before, after)
	}
	if st.Pid != s.Pid {
		t.Errorf("restored pid %d, want %d", st.Pid, s.Pid)
	}
	if progressErr != nil || done != total || total == 0 {
		t.Errorf("restore progress ended at %d of %d bytes: %v", done, total, progressErr)
	}
	return st, buf
}

// images is what the tests read of a one-process checkpoint.
type images struct {
	dir    *image.Dir
	pstree *pb.PstreeEntry
	mm     *pb.MmEntry
	cores  map[uint32]*pb.CoreEntry
	files  map[uint32]*pb.FileEntry
	pages  []image.PageEntry
}

func readImages(t *testing.T, dir string, pid int) *images {
	t.Helper()
	c := testutil.ReadCheckpoint(t, dir, pid)
	return &images{dir: c.Dir, pstree: c.Pstree, mm: c.MM, cores: c.Cores, files: c.Files, pages: c.Pages}
}

// threads are the dumped TIDs, sorted.
func (im *images) threads() []int {
	var tids []int
	for _, tid := range im.pstree.Threads {
		tids = append(tids, int(tid))
	}
	slices.Sort(tids)
	return tids
}

// vmaWith returns the VMA with a status bit, nil if none has it.
func (im *images) vmaWith(status uint32) *pb.VmaEntry {
	for _, v := range im.mm.Vmas {
		if v.GetStatus()&status != 0 {
			return v
		}
	}
	return nil
}

// read returns the stored contents of [addr, addr+n).
func (im *images) read(t *testing.T, addr uint64, n int) []byte {
	t.Helper()
	pr, err := im.dir.OpenPages(im.pstree.GetPid())
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	b := make([]byte, n)
	covered := 0
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := max(addr, e.Vaddr), min(addr+uint64(n), e.Vaddr+e.NrPages*pageSize)
		if lo >= hi {
			continue
		}
		if _, err := pr.Data(e).ReadAt(b[lo-addr:hi-addr], int64(lo-e.Vaddr)); err != nil {
			t.Fatal(err)
		}
		covered += int(hi - lo)
	}
	if covered != n {
		t.Fatalf("%#x+%d: only %d bytes are in the images", addr, n, covered)
	}
	return b
}

// area is a range of the address space as /proc/PID/maps shows it, with
// what the tests compare of it.
type area struct {
	Start, End uint64
	Perms      string
	Name       string // file path, [heap], [vdso]...; "" for anonymous memory
}

func (a area) String() string { return fmt.Sprintf("%x-%x %s %s", a.Start, a.End, a.Perms, a.Name) }

// liveAreas reads the maps of pid, without [vsyscall].
func liveAreas(t *testing.T, pid int) []area {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	var out []area
	for _, m := range maps {
		if m.Path == "[vsyscall]" {
			continue
		}
		out = append(out, area{m.Start, m.End, m.Perms, m.Path})
	}
	return out
}

// dumpedAreas is the address space the images describe, as maps would
// show it: the vvar entry split into [vvar] and [vvar_vclock] as split
// says (the image keeps them as one).
func (im *images) dumpedAreas(t *testing.T, vvarSplit uint64) []area {
	t.Helper()
	var out []area
	for _, v := range im.mm.Vmas {
		a := area{Start: v.GetStart(), End: v.GetEnd(), Perms: permsOf(v)}
		st := v.GetStatus()
		if st&image.VMAAreaGuard != 0 {
			continue // a guard region inside a VMA
		}
		switch {
		case st&image.VMAAreaVVAR != 0:
			if vvarSplit > a.Start && vvarSplit < a.End {
				out = append(out, area{a.Start, vvarSplit, "r--p", "[vvar]"})
				a.Start, a.Name = vvarSplit, "[vvar_vclock]"
			} else {
				a.Name = "[vvar]"
			}
			a.Perms = "r--p"
		case st&image.VMAAreaVDSO != 0:
			a.Name = "[vdso]"
		case st&(image.VMAFilePrivate|image.VMAFileShared) != 0:
			a.Name = im.files[uint32(v.GetShmid())].GetReg().GetName()
		case st&image.VMAAreaHeap != 0:
			a.Name = "[heap]"
		case st&image.VMAAreaStack != 0:
			a.Name = "[stack]"
		}
		out = append(out, a)
	}
	return out
}

func permsOf(v *pb.VmaEntry) string {
	p := []byte("---p")
	if v.GetProt()&0x1 != 0 {
		p[0] = 'r'
	}
	if v.GetProt()&0x2 != 0 {
		p[1] = 'w'
	}
	if v.GetProt()&0x4 != 0 {
		p[2] = 'x'
	}
	if v.GetFlags()&0x01 != 0 { // MAP_SHARED
		p[3] = 's'
	}
	return string(p)
}

// merged joins adjacent areas that maps could show either as one or as
// two: same permissions and name, and for files nothing says the offsets
// follow, but the images have none the kernel would not also merge.
func merged(as []area) []area {
	var out []area
	for _, a := range as {
		if n := len(out); n > 0 && out[n-1].End == a.Start && out[n-1].Perms == a.Perms && out[n-1].Name == a.Name &&
			!strings.HasPrefix(a.Name, "[v") {
			out[n-1].End = a.End
			continue
		}
		out = append(out, a)
	}
	return out
}

// diffAreas describes how got differs from want, "" if not at all.
func diffAreas(want, got []area) string {
	var b strings.Builder
	for _, a := range want {
		if !slices.Contains(got, a) {
			fmt.Fprintf(&b, "- %v\n", a)
		}
	}
	for _, a := range got {
		if !slices.Contains(want, a) {
			fmt.Fprintf(&b, "+ %v\n", a)
		}
	}
	return b.String()
}

// readMem reads n bytes at addr of process pid.
func readMem(t *testing.T, pid int, addr uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		t.Fatalf("read %d bytes at %#x of pid %d: %v", n, addr, pid, err)
	}
	return b
}

// tasks lists the threads of pid, sorted.
func tasks(t *testing.T, pid int) []int {
	t.Helper()
	tids, err := proc.ReadTasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tids)
	return tids
}

// timensOffsets reads a process's time namespace offsets, in nanoseconds.
func timensOffsets(t *testing.T, pid int) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timens_offsets", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("timens_offsets line %q", line)
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("timens_offsets line %q: %v", line, err)
		}
		out[f[0]] = sec*1e9 + nsec
	}
	return out
}

// dumpLeaveRunning dumps pid into dir and lets it go on.
func dumpLeaveRunning(pid int, dir string) (*dump.Stats, error) {
	log, buf := newLog()
	st, err := dump.Dump(context.Background(), dump.Options{Pid: pid, Dir: dir, LeaveRunning: true, Log: log})
	if err != nil {
		return nil, fmt.Errorf("dump pid %d: %w\nlog:\n%s", pid, err, buf)
	}
	return st, nil
}
