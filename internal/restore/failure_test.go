package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// The tests here count the test process's children, so they do not run in
// parallel: Go runs every parallel test after the sequential ones.

// checkNothingLeft checks that a failed restore left nothing behind: no
// task with the dumped PID, and no child of the test process, running or
// zombie, that was not there before.
func checkNothingLeft(t *testing.T, before map[int]string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, fs.ErrNotExist) {
			st, _ := proc.ReadStat(pid)
			t.Errorf("pid %d exists after the failed restore: %s (state %c, parent %d)", pid, st.Comm, st.State, st.PPid)
		}
	}
	after := testutil.Children(t)
	for p, what := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("child %d left behind: %s", p, what)
		}
	}
}

// dirSum is a digest of every file in a directory, to check that a restore
// changed nothing there.
func dirSum(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var b []byte
		// Of a FIFO or a directory, the name is what counts.
		if e.Type().IsRegular() {
			if b, err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

// TestRestoreFailAt makes each step of a restore fail in turn, for a
// process and for a tree: each failure names its step, and leaves
// nothing running and nothing changed, so that the same images restore
// afterwards.
func TestRestoreFailAt(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("sink", func(t *testing.T) {
		s := startSink(t)
		s.WaitTicks(t, 3)
		c := dumpAndReap(t, s)
		failEveryStep(t, s, c, []int{s.Pid})
	})
	t.Run("tree", func(t *testing.T) {
		s, pids := startTree(t)
		s.WaitTicks(t, 3)
		c := dumpAndReap(t, s)
		var all []int
		for _, pid := range pids {
			all = append(all, pid)
		}
		if err := testutil.WaitPidsFree(all...); err != nil {
			t.Fatal(err)
		}
		failEveryStep(t, s, c, all)
	})
}

// failEveryStep restores c, s's checkpoint of the processes pids, with
// each step failing in turn, then cancelled, then for real.
func failEveryStep(t *testing.T, s *subject, c *checkpoint, pids []int) {
	t.Helper()
	before := testutil.Children(t)
	imagesBefore, filesBefore := dirSum(t, c.dir), dirSum(t, s.dir)
	for _, step := range restore.Steps {
		t.Run(step, func(t *testing.T) {
			log, buf := newLog()
			st, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, FailAt: step, Log: log})
			if err == nil {
				t.Fatalf("restore with FailAt %q succeeded (pid %d)", step, st.Pid)
			}
			if !errors.Is(err, restore.ErrInjected) || !strings.Contains(err.Error(), ": "+step+": ") {
				t.Errorf("error %q does not wrap ErrInjected with the step %q\nlog:\n%s", err, step, buf)
			}
			checkNothingLeft(t, before, pids...)
			if d := dirSum(t, c.dir); !maps.Equal(d, imagesBefore) {
				t.Errorf("the failed restore changed the images")
			}
			if d := dirSum(t, s.dir); !maps.Equal(d, filesBefore) {
				t.Errorf("the failed restore changed the subject's files: %v, was %v", slices.Sorted(maps.Keys(d)), slices.Sorted(maps.Keys(filesBefore)))
			}
		})
	}
	// Cancelled while it writes the memory, as cryo is by SIGINT: what
	// it built is killed at once, and the error says it was cancelled.
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		log, buf := newLog()
		_, err := restore.Restore(ctx, restore.Options{Dir: c.dir, Log: log, Progress: func(done, total uint64) { cancel() }})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "restore cancelled") {
			t.Errorf("error %v, want the restore cancelled\nlog:\n%s", err, buf)
		}
		checkNothingLeft(t, before, pids...)
	})
	if t.Failed() {
		return
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2*checkEvery+5)

	// A restore that succeeded leaves the restored root as the test
	// process's only new child: no stub.
	after := testutil.Children(t)
	delete(after, s.Pid)
	for p, what := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("child %d left behind by the restore: %s", p, what)
		}
	}
}

// copyDir copies a directory of images into a new one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "images")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// rewriteImage replaces an image with the records given.
func rewriteImage(t *testing.T, dir string, k image.Kind, id uint32, msgs ...pb.Message) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, k.FileName(id))); err != nil {
		t.Fatal(err)
	}
	d, err := image.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteImage(k, id, msgs...); err != nil {
		t.Fatal(err)
	}
}

// rewriteMM changes the mm image of pid in dir with edit.
func rewriteMM(t *testing.T, dir string, pid int, edit func(vmas []*pb.VmaEntry) []*pb.VmaEntry) {
	t.Helper()
	im := readImages(t, dir, pid)
	im.mm.Vmas = edit(im.mm.Vmas)
	rewriteImage(t, dir, image.MM, uint32(pid), im.mm)
}

// TestRestoreBadImages restores broken checkpoints: each fails with a
// clear error and leaves nothing running.
func TestRestoreBadImages(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	pid := s.Pid
	im := c.im
	fileOf := func(t *testing.T, fd string) *pb.FileEntry {
		t.Helper()
		fds, err := image.ReadAll[pb.FdinfoEntry](im.dir, image.Fdinfo, uint32(pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fds {
			if fmt.Sprint(e.GetFd()) == s.Ready[fd] {
				return im.files[e.GetId()]
			}
		}
		t.Fatalf("no fd %s=%s in the images", fd, s.Ready[fd])
		return nil
	}
	tests := []struct {
		name string
		// broken returns the directory to restore from.
		broken func(t *testing.T) string
		// image: the error wraps ErrImage; else it holds all of want.
		image bool
		want  []string
	}{
		{name: "missing directory", image: true, want: []string{"no such file"}, broken: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "nothing")
		}},
		{name: "empty directory", image: true, want: []string{"inventory.img"}, broken: func(t *testing.T) string {
			return t.TempDir()
		}},
		{name: "wrong magic in core", image: true, want: []string{fmt.Sprintf("core-%d.img", pid)}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			name := filepath.Join(dir, fmt.Sprintf("core-%d.img", pid))
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			copy(b[4:8], "JUNK") // the image's own magic follows CRIU's image-set magic
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "truncated pages", image: true, want: []string{"pages-1.img"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			name := filepath.Join(dir, "pages-1.img")
			st, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(name, st.Size()-pageSize-100); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "truncated pagemap", image: true, want: []string{fmt.Sprintf("pagemap-%d.img", pid)}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			name := filepath.Join(dir, fmt.Sprintf("pagemap-%d.img", pid))
			st, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(name, st.Size()-3); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "overlapping VMAs", image: true, want: []string{"overlaps"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			rewriteMM(t, dir, pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry {
				// The second VMA starts a page before the first ends.
				vmas[1].Start = vmas[0].GetEnd() - pageSize
				return vmas
			})
			return dir
		}},
		{name: "missing pipe data", image: true, want: []string{"pipes-data.img is missing"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Remove(filepath.Join(dir, "pipes-data.img")); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "missing FIFO data", image: true, want: []string{"fifo-data.img is missing"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Remove(filepath.Join(dir, "fifo-data.img")); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "missing cpuinfo", image: true, want: []string{"cpuinfo.img"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Remove(filepath.Join(dir, "cpuinfo.img")); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "missing clocks", image: true, want: []string{"timens-1.img"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Remove(filepath.Join(dir, "timens-1.img")); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "VMA at address 0", image: true, want: []string{"mmap_min_addr"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			rewriteMM(t, dir, pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry {
				low := pb.Clone(vmas[0])
				low.Start, low.End = 0, pageSize
				return append([]*pb.VmaEntry{low}, vmas...)
			})
			return dir
		}},
		{name: "directory writable by all", image: true, want: []string{"writable by others"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "pages outside every VMA", image: true, want: []string{"outside every VMA"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			anon := s.ReadyUint(t, "anon")
			rewriteMM(t, dir, pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry {
				return slices.DeleteFunc(vmas, func(v *pb.VmaEntry) bool { return v.GetStart() <= anon && anon < v.GetEnd() })
			})
			return dir
		}},
		{name: "guard region outside every VMA", image: true, want: []string{"guard region 0x1000-0x2000"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			rewriteMM(t, dir, pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry { return append(vmas, guardAt(0x1000)) })
			return dir
		}},
		{name: "guard region among the VMAs", image: true, want: []string{"before a VMA"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			rewriteMM(t, dir, pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry {
				return append([]*pb.VmaEntry{guardAt(vmas[0].GetStart())}, vmas...)
			})
			return dir
		}},
		{name: "oom_score_adj below cryo's", want: []string{"oom_score_adj -500", "CAP_SYS_RESOURCE"}, broken: func(t *testing.T) string {
			if st, err := proc.ReadStatus(0); err != nil || st.CapEff&(1<<unix.CAP_SYS_RESOURCE) != 0 {
				t.Skipf("cryo may lower oom_score_adj (CAP_SYS_RESOURCE) or its status is unreadable: %v", err)
			}
			dir := copyDir(t, c.dir)
			core := pb.Clone(im.cores[uint32(pid)])
			core.Tc.OomScoreAdj = pb.Int32(-500)
			rewriteImage(t, dir, image.Core, uint32(pid), core)
			return dir
		}},
		{name: "another security label", want: []string{`security label was "confined (enforce)"`, "cryo's"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			core := pb.Clone(im.cores[uint32(pid)])
			core.ThreadCore.Creds.LsmProfile = pb.String("confined (enforce)")
			rewriteImage(t, dir, image.Core, uint32(pid), core)
			return dir
		}},
		{name: "fd of a file missing from files.img", image: true, want: []string{"files.img lacks"}, broken: func(t *testing.T) string {
			dir := copyDir(t, c.dir)
			gone := fileOf(t, "reg").GetId()
			var keep []pb.Message
			for _, f := range slices.Sorted(maps.Keys(im.files)) {
				if f != gone {
					keep = append(keep, im.files[f])
				}
			}
			rewriteImage(t, dir, image.Files, 0, keep...)
			return dir
		}},
		{name: "CPU lacks instructions", want: []string{"CPU lacks features the process uses", "instruction sets the dump's CPU offered", "--allow-missing-cpu-features"}, broken: func(t *testing.T) string {
			// The dump's CPU had every feature there is.
			dir := copyDir(t, c.dir)
			info := cpu.ReadHost().Image()
			for i := range info.X86Entry[0].Capability {
				info.X86Entry[0].Capability[i] = ^uint32(0)
			}
			rewriteImage(t, dir, image.Cpuinfo, 0, info)
			return dir
		}},
		{name: "open file deleted", want: []string{"reg.txt", "no such file"}, broken: func(t *testing.T) string {
			name := fileOf(t, "reg").GetReg().GetName()
			if err := os.Rename(name, name+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Rename(name+".away", name) })
			return c.dir
		}},
		{name: "mapped file deleted", want: []string{"private.dat", "no such file"}, broken: func(t *testing.T) string {
			name := filepath.Join(s.dir, "private.dat")
			if err := os.Rename(name, name+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Rename(name+".away", name) })
			return c.dir
		}},
		{name: "executable deleted", want: []string{"no such file"}, broken: func(t *testing.T) string {
			// A copy of the sink that goes away: the dump's own binary is
			// shared with the other tests.
			dir := copyDir(t, c.dir)
			exe := im.files[im.mm.GetExeFileId()].GetReg().GetName()
			var msgs []pb.Message
			for _, id := range slices.Sorted(maps.Keys(im.files)) {
				f := pb.Clone(im.files[id])
				if f.GetReg().GetName() == exe {
					f.GetReg().Name = exe + ".gone"
				}
				msgs = append(msgs, f)
			}
			rewriteImage(t, dir, image.Files, 0, msgs...)
			return dir
		}},
	}
	before := testutil.Children(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.broken(t)
			log, buf := newLog()
			_, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log})
			if err == nil {
				s.Restored()
				t.Fatalf("restore of a broken checkpoint succeeded")
			}
			if tt.image && !errors.Is(err, restore.ErrImage) {
				t.Errorf("error %q does not wrap ErrImage\nlog:\n%s", err, buf)
			}
			for _, w := range tt.want {
				if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Logf("error: %v", err)
			checkNothingLeft(t, before, pid)
		})
	}
	if t.Failed() {
		return
	}
	// The original images still restore.
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2*checkEvery+5)
}

// TestRestorePidTaken restores a process whose PID is still in use: the
// error says so and names the holder.
func TestRestorePidTaken(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))}
	s.WaitTicks(t, 3)
	dir := filepath.Join(t.TempDir(), "images")
	if _, err := dumpLeaveRunning(s.Pid, dir); err != nil {
		t.Fatal(err)
	}
	comm, err := proc.ReadComm(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.Children(t)
	log, buf := newLog()
	_, err = restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log})
	if err == nil {
		t.Fatal("restore over a live process succeeded")
	}
	if !errors.Is(err, restore.ErrPidTaken) || !strings.Contains(err.Error(), "pid in use") || !strings.Contains(err.Error(), comm) {
		t.Errorf("error %q does not say the pid is in use by %s\nlog:\n%s", err, comm, buf)
	}
	// Nothing new, and the holder untouched.
	checkNothingLeft(t, before)
	s.WaitTicks(t, 5)
}

// TestRestoreRemapRefused restores a checkpoint whose vDSO differs from
// this kernel's: --vdso=remap refuses, naming the functions that differ;
// auto chooses the proxy.
func TestRestoreRemapRefused(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)

	// The vDSO of Linux 6.1, with its layout: 16 KiB of [vvar] right below
	// the code.
	old, err := vdso.Load(filepath.Join(testutil.ModuleRoot(t), "internal", "vdso", "testdata", "linux-6.1-amd64.so"))
	if err != nil {
		t.Fatal(err)
	}
	dir := copyDir(t, c.dir)
	vd := c.im.vmaWith(image.VMAAreaVDSO)
	if uint64(len(old.Bytes)) != vd.GetEnd()-vd.GetStart() {
		t.Fatalf("the 6.1 vDSO has %d bytes, the dumped one %d", len(old.Bytes), vd.GetEnd()-vd.GetStart())
	}
	writePages(t, dir, c.im, vd.GetStart(), old.Bytes)
	rewriteMM(t, dir, s.Pid, func(vmas []*pb.VmaEntry) []*pb.VmaEntry {
		for _, v := range vmas {
			if v.GetStatus()&image.VMAAreaVVAR != 0 {
				v.Start = vd.GetStart() - old.Layout.VVarSize()
				v.End = vd.GetStart()
			}
		}
		return vmas
	})

	before := testutil.Children(t)
	log, buf := newLog()
	_, err = restore.Restore(context.Background(), restore.Options{Dir: dir, VDSO: restore.VDSORemap, Log: log})
	if err == nil {
		s.Restored()
		t.Fatal("--vdso=remap restored a checkpoint whose vDSO differs")
	}
	t.Logf("error: %v", err)
	for _, w := range []string{"remap", "__vdso_clock_gettime", "__vdso_gettimeofday"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q\nlog:\n%s", err, w, buf)
		}
	}
	checkNothingLeft(t, before, s.Pid)

	// Auto proxies. The process may then crash: it resolved its vDSO
	// pointers in this kernel's vDSO, whose code is no longer at them.
	st, buf := restoreSubject(t, s, &checkpoint{dir: dir}, restore.Options{VDSO: restore.VDSOAuto})
	if st.VDSO != vdso.ModeProxy {
		t.Errorf("auto chose %v, want proxy", st.VDSO)
	}
	if !strings.Contains(buf.String(), "vDSO: proxy, the vDSOs differ") {
		t.Errorf("the log does not say why it proxies:\n%s", buf)
	}
}

// writePages overwrites stored page contents at addr in a copy of the
// images.
func writePages(t *testing.T, dir string, im *images, addr uint64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "pages-1.img"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for _, e := range im.pages {
		lo, hi := max(addr, e.Vaddr), min(addr+uint64(len(data)), e.Vaddr+e.NrPages*pageSize)
		if lo >= hi {
			continue
		}
		if _, err := f.WriteAt(data[lo-addr:hi-addr], e.Offset+int64(lo-e.Vaddr)); err != nil {
			t.Fatal(err)
		}
		n += int(hi - lo)
	}
	if n != len(data) {
		t.Fatalf("%d of %d bytes at %#x are in the pages", n, len(data), addr)
	}
	// Read back through the page reader, to check the offsets.
	d, _ := image.Open(dir)
	pr, err := d.OpenPages(im.pstree.GetPid())
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Vaddr <= addr && addr < e.Vaddr+e.NrPages*pageSize {
			b := make([]byte, min(uint64(len(data)), e.Vaddr+e.NrPages*pageSize-addr))
			pr.Data(e).ReadAt(b, int64(addr-e.Vaddr))
			if !bytes.Equal(b, data[:len(b)]) {
				t.Fatalf("rewritten pages do not read back")
			}
		}
	}
}

// TestRestoreTidTaken restores a process one of whose thread ids another
// process holds: the error names the id and the holder, and nothing of
// the restore is left.
func TestRestoreTidTaken(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	tid := int(s.ReadyUint(t, "sleeper_tid"))

	// A process with that id: a child, made with clone3's set_tid, of a
	// stopped sleep(1).
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	holder, err := ptrace.Spawn(sleep, []string{"sleep", "1000"}, nil, unix.PTRACE_O_EXITKILL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.KillAll() })
	if got, err := holder.Clone3(holder.Pid(), kernel.CloneArgs{ExitSignal: uint64(unix.SIGCHLD)}, tid); err != nil || got != tid {
		t.Fatalf("clone3 with set_tid %d: %d, %v", tid, got, err)
	}

	before := testutil.Children(t)
	log, buf := newLog()
	_, err = restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if err == nil {
		s.Restored()
		t.Fatal("restore succeeded with a thread id taken")
	}
	want := fmt.Sprintf("create thread %d: pid in use: %d is taken by sleep", tid, tid)
	if !errors.Is(err, restore.ErrPidTaken) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q\nlog:\n%s", err, want, buf)
	}
	checkNothingLeft(t, before, s.Pid)
}

// TestRestoreWaitsForZombie restores while the zombie of the dumped
// process still holds its PID, as after `cryo dump` then `cryo restore`
// at once: the restore waits until the parent reaps it.
func TestRestoreWaitsForZombie(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	s.WaitTicks(t, 2)
	dir := filepath.Join(t.TempDir(), "images")
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	// The dump killed it; its parent, the test, reaps it only later.
	for {
		st, err := proc.ReadStat(s.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == 'Z' {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	reaped := make(chan struct{})
	go func() {
		time.Sleep(300 * time.Millisecond)
		s.ReapDumped(t)
		close(reaped)
	}()
	log, buf := newLog()
	st, err := restore.Restore(context.Background(), restore.Options{Dir: dir, Log: log})
	<-reaped
	if err != nil {
		t.Fatalf("restore: %v\nlog:\n%s", err, buf)
	}
	s.Restored()
	if !strings.Contains(buf.String(), "waiting for a zombie") {
		t.Errorf("the log does not say the restore waited:\n%s", buf)
	}
	if st.Pid != s.Pid {
		t.Errorf("restored pid %d, want %d", st.Pid, s.Pid)
	}
	s.WaitTicks(t, 3)
}

// TestRestoreCancelledPromptly cancels a restore, as SIGTERM does, while
// it may be blocked opening a dumped file that someone replaced by a FIFO:
// it must end within a second, leaving nothing behind.
func TestRestoreCancelledPromptly(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	c := dumpAndReap(t, s)
	reg := filepath.Join(s.dir, "reg.txt")
	// Read-only, so that opening a FIFO there blocks.
	dir := copyDir(t, c.dir)
	d, err := image.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := image.ReadAll[pb.FileEntry](d, image.Files, 0)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []pb.Message
	for _, f := range files {
		if f.GetReg().GetName() == reg {
			f.GetReg().Flags = unix.O_RDONLY
		}
		msgs = append(msgs, f)
	}
	rewriteImage(t, dir, image.Files, 0, msgs...)
	if err := os.Remove(reg); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(reg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		// Told to take the file as it is now, so that the restore gets as
		// far as opening it.
		_, err := restore.Restore(ctx, restore.Options{Dir: dir, AllowChanged: []string{reg}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("restore of a file replaced by a FIFO succeeded")
		}
		t.Log(err)
	case <-time.After(1300 * time.Millisecond):
		t.Fatal("restore still runs a second after it was cancelled")
	}
	if kids := testutil.Children(t); len(kids) > 0 {
		t.Errorf("the cancelled restore left %v", kids)
	}
}

// guardAt is a one-page guard region entry at addr.
func guardAt(addr uint64) *pb.VmaEntry {
	return &pb.VmaEntry{
		Start: addr, End: addr + pageSize, Pgoff: 0, Shmid: 0,
		Prot: 0, Flags: 0, Status: image.VMAAreaGuard, Fd: -1,
	}
}
