package restore_test

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// checkEvery is how many ticks the sink gives each of its threads to show
// progress (CHECK_EVERY in sink.c): waiting for more than twice as many
// ticks lets at least one full check run.
const checkEvery = 25

// TestRestore dumps each subject, restores it with the vDSO remapped (what
// auto chooses on the kernel that dumped it) and with the proxy forced, and
// checks that it goes on as it was: same PID and TIDs, same address space,
// its own checks (vDSO calls against system calls, memory, files, signal
// state, threads) passing tick after tick.
func TestRestore(t *testing.T) {
	testutil.RequireRoot(t)
	for _, k := range subjectKinds {
		for _, mode := range []restore.VDSOMode{restore.VDSOAuto, restore.VDSOProxy} {
			t.Run(k.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				s := k.start(t)
				s.WaitTicks(t, 3)
				if k.sink {
					// Make sure the handler was installed and works before.
					if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
						t.Fatal(err)
					}
					waitField(t, s, "usr1", func(v int) bool { return v >= 1 })
					// A signal pending for the main thread, which blocks it.
					if err := unix.Tgkill(s.Pid, s.Pid, unix.SIGUSR2); err != nil {
						t.Fatal(err)
					}
				}
				// A thread with a nice value of its own.
				niced := s.Pid
				if k.sink {
					niced = int(s.ReadyUint(t, "sleeper_tid"))
				}
				if err := unix.Setpriority(unix.PRIO_PROCESS, niced, 7); err != nil {
					t.Fatal(err)
				}
				c := dumpAndReap(t, s)
				st, log := restoreSubject(t, s, c, restore.Options{VDSO: mode})
				// The layout first, before the process has had a chance to
				// change it.
				live := liveAreas(t, s.Pid)
				wantMode := vdso.ModeRemap
				if mode == restore.VDSOProxy {
					wantMode = vdso.ModeProxy
				}
				if st.VDSO != wantMode {
					t.Errorf("restore chose vDSO %v, want %v\nlog:\n%s", st.VDSO, wantMode, log)
				}
				if wantMode == vdso.ModeRemap {
					checkRemapLayout(t, c, live, !k.glibc)
				} else {
					checkProxyLayout(t, s.Pid, c, live, !k.glibc)
				}

				// Same PID and TIDs. A Go program may start threads of its
				// own at any time: it must keep the dumped ones. The
				// churning sink's short-lived threads come and go.
				got, want := tasks(t, s.Pid), c.im.threads()
				switch {
				case k.churn:
				case k.glibc && !slices.Equal(got, want), !k.glibc && !isSubset(want, got):
					t.Errorf("restored threads %v, dumped %v", got, want)
				}

				// It goes on: enough ticks for every check of the sink's
				// threads to run twice.
				s.WaitTicks(t, 2*checkEvery+5)
				ticks := s.TickLines()
				for _, tk := range ticks[c.ticks:] {
					if tk.Fields["pid"] != strconv.Itoa(s.Pid) {
						t.Fatalf("tick %d after the restore says pid=%s, want %d", tk.N, tk.Fields["pid"], s.Pid)
					}
				}
				if first := ticks[c.ticks]; first.N != c.lastTick.N+1 {
					t.Errorf("first tick after the restore is %d, the last before was %d", first.N, c.lastTick.N)
				}
				if k.sink {
					checkSinkAfterRestore(t, s, c)
				}
			})
		}
	}
}

// waitField waits until the subject's last tick has a numeric field for
// which ok holds.
func waitField(t *testing.T, s *subject, key string, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for {
		if tk := s.LastTick(); tk != nil {
			if v, err := strconv.Atoi(tk[key]); err == nil && ok(v) {
				return v
			}
		}
		if !s.Alive() || time.Now().After(deadline) {
			t.Fatalf("subject %d: %s never as wanted; last tick %v:\n%s", s.Pid, key, s.LastTick(), s.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isSubset(a, b []int) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// checkSinkAfterRestore checks what the sink's own checks cannot: that its
// SIGUSR1 handler still runs, and that the reader thread was dumped inside
// its read() (its own check then shows the read resumed without EINTR).
func checkSinkAfterRestore(t *testing.T, s *subject, c *checkpoint) {
	t.Helper()
	before := waitField(t, s, "usr1", func(int) bool { return true })
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitField(t, s, "usr1", func(v int) bool { return v > before })

	// The unlinked file was recreated to be opened, and unlinked again.
	if left, _ := filepath.Glob(filepath.Join(s.dir, "ghost.txt*")); len(left) > 0 {
		t.Errorf("the restore left the unlinked file's copy: %v", left)
	}

	reader, err := strconv.Atoi(s.Ready["reader_tid"])
	if err != nil {
		t.Fatalf("reader_tid: %v", err)
	}
	regs := c.im.cores[uint32(reader)].GetThreadInfo().GetGpregs()
	if regs.GetOrigAx() != unix.SYS_READ || int64(regs.GetAx()) != -int64(kernel.ErestartSys) {
		t.Logf("reader thread dumped at orig_rax %d rax %d, not inside read(): the EINTR check did not run this time",
			int64(regs.GetOrigAx()), int64(regs.GetAx()))
	}
	reads := waitField(t, s, "reader", func(int) bool { return true })
	s.WaitTicks(t, 3)
	waitField(t, s, "reader", func(v int) bool { return v > reads })
}

// ownLayout is the vDSO layout this kernel gives every process.
func ownLayout(t *testing.T) vdso.Layout {
	t.Helper()
	s, err := vdso.ReadLive(0)
	if err != nil {
		t.Fatal(err)
	}
	return s.Layout
}

// vvarSplit is where [vvar_vclock] starts within a dumped vvar VMA on this
// kernel, 0 if it has none.
func vvarSplit(t *testing.T, c *checkpoint) uint64 {
	t.Helper()
	vv := c.im.vmaWith(image.VMAAreaVVAR)
	r, ok := ownLayout(t).Find(vdso.KindVVar)
	if vv == nil || !ok {
		return 0
	}
	return vv.GetStart() + r.Size()
}

// compareLayout compares the live maps with the wanted areas; with loose,
// areas the process mapped since (a Go runtime maps at any time) are
// allowed, and the dumped areas must only be covered with their
// permissions.
func compareLayout(t *testing.T, want, live []area, loose bool) {
	t.Helper()
	want, live = merged(want), merged(live)
	if !loose {
		if d := diffAreas(want, live); d != "" {
			t.Errorf("restored maps differ from the dumped VMAs (-dumped +restored):\n%s", d)
		}
		return
	}
	for _, w := range want {
		covered := w.Start
		for _, l := range live {
			if l.Start <= covered && l.End > covered && l.Perms == w.Perms && l.Name == w.Name {
				covered = l.End
			}
		}
		if covered < w.End {
			t.Errorf("dumped area %v is not in the restored maps:\n%v", w, live)
		}
	}
}

// checkRemapLayout checks that the restored maps are the dumped VMAs,
// [vvar], [vvar_vclock] and [vdso] included, at the dumped addresses.
func checkRemapLayout(t *testing.T, c *checkpoint, live []area, loose bool) {
	t.Helper()
	want := c.im.dumpedAreas(t, vvarSplit(t, c))
	compareLayout(t, want, live, loose)
	for _, a := range want {
		if a.Name == "[vdso]" || a.Name == "[vvar]" || a.Name == "[vvar_vclock]" {
			if !slices.Contains(live, a) {
				t.Errorf("no %v in the restored maps", a)
			}
		}
	}
}

// checkProxyLayout checks the proxy's layout: the dumped VMAs but for the
// vDSO pair; at the old [vdso] an anonymous r-x mapping with the dumped
// code, every function patched with a jump to the same function of the
// runtime vDSO; at the old vvar an inaccessible reservation; the runtime
// block elsewhere, marked.
func checkProxyLayout(t *testing.T, pid int, c *checkpoint, live []area, loose bool) {
	t.Helper()
	oldVDSO, oldVVar := c.im.vmaWith(image.VMAAreaVDSO), c.im.vmaWith(image.VMAAreaVVAR)
	if oldVDSO == nil || oldVVar == nil {
		t.Fatalf("the images have no vDSO (%v) or vvar (%v)", oldVDSO, oldVVar)
	}
	var want []area
	for _, a := range c.im.dumpedAreas(t, 0) {
		switch a.Name {
		case "[vdso]":
			a.Perms, a.Name = "r-xp", ""
		case "[vvar]":
			a.Perms, a.Name = "---p", ""
		}
		want = append(want, a)
	}
	// The runtime block, wherever it went.
	rt := ownLayout(t)
	var block []area
	for _, l := range live {
		if l.Name == "[vvar]" || l.Name == "[vvar_vclock]" || l.Name == "[vdso]" {
			block = append(block, l)
		}
	}
	if len(block) != len(rt) {
		t.Fatalf("restored maps have %d runtime vDSO mappings, want %d:\n%v", len(block), len(rt), live)
	}
	for i, r := range rt {
		if block[i].Name != r.Kind.String() || block[i].End-block[i].Start != r.Size() ||
			i > 0 && block[i].Start != block[i-1].End {
			t.Errorf("runtime vDSO block %v, want the layout %v moved as a unit", block, rt)
			break
		}
	}
	want = append(want, block...)
	slices.SortFunc(want, func(a, b area) int { return int(int64(a.Start>>12) - int64(b.Start>>12)) })
	compareLayout(t, want, live, loose)

	rtVDSO := block[len(block)-1].Start
	markBytes := readMem(t, pid, rtVDSO, vdso.MarkSize)
	mark, err := vdso.ParseMark(markBytes)
	if err != nil {
		t.Fatalf("runtime vDSO at %#x: %v (%q)", rtVDSO, err, markBytes)
	}
	if wantMark := (vdso.Mark{VDSO: oldVDSO.GetStart(), VVar: oldVVar.GetStart(), RuntimeVVar: block[0].Start}); mark != wantMark {
		t.Errorf("proxy mark %+v, want %+v", mark, wantMark)
	}

	// The old vvar range is inaccessible: process_vm_readv, which reads as
	// the process would (unlike /proc/PID/mem, which forces access), fails.
	buf := make([]byte, 8)
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(oldVVar.GetStart()), Len: len(buf)}}
	if n, err := unix.ProcessVMReadv(pid, local, remote, 0); err == nil {
		t.Errorf("the old vvar range at %#x is readable (%d bytes)", oldVVar.GetStart(), n)
	}

	// The old code, patched where the functions start and nowhere else.
	size := int(oldVDSO.GetEnd() - oldVDSO.GetStart())
	dumped := c.im.read(t, oldVDSO.GetStart(), size)
	proxied := readMem(t, pid, oldVDSO.GetStart(), size)
	oldImg, err := vdso.Parse(dumped)
	if err != nil {
		t.Fatal(err)
	}
	own, err := vdso.ReadLive(0)
	if err != nil {
		t.Fatal(err)
	}
	expect := slices.Clone(dumped)
	for _, sym := range oldImg.Symbols {
		target, ok := own.Image.Lookup(sym.Name, sym.Version)
		if !ok {
			t.Errorf("runtime vDSO lacks %s", sym)
			continue
		}
		at, to := oldVDSO.GetStart()+sym.Offset, rtVDSO+target.Offset
		p := proxied[sym.Offset:]
		var n int
		switch {
		case p[0] == 0xe9: // jmp rel32
			n = 5
			if got := at + 5 + uint64(int64(int32(binary.LittleEndian.Uint32(p[1:])))); got != to {
				t.Errorf("%s at %#x jumps to %#x, want %#x", sym, at, got, to)
			}
		case p[0] == 0x48 && p[1] == 0xb8 && p[10] == 0xff && p[11] == 0xe0: // movabs; jmp *%rax
			n = 12
			if got := binary.LittleEndian.Uint64(p[2:]); got != to {
				t.Errorf("%s at %#x jumps to %#x, want %#x", sym, at, got, to)
			}
		default:
			t.Errorf("%s at %#x is not patched: % x", sym, at, p[:16])
			continue
		}
		// Padding after the jump is int3.
		for n < len(p) && p[n] == 0xcc && dumped[int(sym.Offset)+n] != 0xcc && n < 16 {
			n++
		}
		copy(expect[sym.Offset:], p[:n])
	}
	if !bytes.Equal(expect, proxied) {
		for i := range expect {
			if expect[i] != proxied[i] {
				t.Errorf("proxy vDSO differs from the dumped code at offset %#x, outside every patch", i)
				break
			}
		}
	}
}
