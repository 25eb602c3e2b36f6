package restore_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// TestRestoreChain takes a process through dump -> restore with the proxy
// -> dump -> restore with auto: the second dump recognises the proxy and
// records the original vDSO and vvar, the second restore remaps on its own
// (the checkpoint's vDSO is this kernel's, patched), and the process ends
// as it was. The two dumps must agree on everything the process did not
// change itself: a difference is state the restore lost.
func TestRestoreChain(t *testing.T) {
	testutil.RequireRoot(t)
	for _, name := range []string{"vdsoclock", "sink"} {
		k := kind(t, name)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := k.start(t)
			s.WaitTicks(t, 3)
			c1 := dumpAndReap(t, s)
			st, _ := restoreSubject(t, s, c1, restore.Options{VDSO: restore.VDSOProxy})
			if st.VDSO != vdso.ModeProxy {
				t.Fatalf("first restore: vDSO %v, want proxy", st.VDSO)
			}
			s.WaitTicks(t, 5)

			c2 := dumpAndReap(t, s)
			// The original vDSO and vvar, and no trace of the runtime
			// pair the proxy calls.
			for _, status := range []uint32{image.VMAAreaVDSO, image.VMAAreaVVAR} {
				var got []area
				for _, v := range c2.im.mm.Vmas {
					if v.GetStatus()&status != 0 {
						got = append(got, area{Start: v.GetStart(), End: v.GetEnd()})
					}
				}
				want := c1.im.vmaWith(status)
				if len(got) != 1 || got[0].Start != want.GetStart() || got[0].End != want.GetEnd() {
					t.Errorf("second dump: VMAs with status %#x at %v, want one at the original %#x-%#x", status, got, want.GetStart(), want.GetEnd())
				}
			}
			if len(c2.im.mm.Vmas) > len(c1.im.mm.Vmas) {
				t.Errorf("second dump has %d VMAs, the first %d", len(c2.im.mm.Vmas), len(c1.im.mm.Vmas))
			}
			compareCheckpoints(t, c1.im, c2.im)

			st, log := restoreSubject(t, s, c2, restore.Options{})
			if st.VDSO != vdso.ModeRemap {
				t.Errorf("second restore (auto): vDSO %v, want remap\nlog:\n%s", st.VDSO, log)
			}
			checkRemapLayout(t, c1, liveAreas(t, s.Pid), false)
			s.WaitTicks(t, 2*checkEvery+5)
		})
	}
}

// mergeVMAs joins adjacent VMAs that a restore may map as one: the kernel
// merges a fresh mapping with a neighbour of the same file, protection and
// flags at the next offset, which the dumped process may have kept apart
// (one with copied-on-write pages, the other without). The contents and
// protections are the same either way. The vvar entry's madvise bits are
// the kernel's (VM_DONTDUMP), not the process's, and no restore sets them.
func mergeVMAs(vmas []*pb.VmaEntry) []*pb.VmaEntry {
	var out []*pb.VmaEntry
	for _, v := range vmas {
		v = pb.Clone(v)
		if v.GetStatus()&image.VMAAreaVVAR != 0 {
			v.Madv = nil
		}
		if n := len(out); n > 0 {
			p := out[n-1]
			file := p.GetStatus()&(image.VMAFilePrivate|image.VMAFileShared) != 0
			if p.GetEnd() == v.GetStart() && p.GetProt() == v.GetProt() && p.GetFlags() == v.GetFlags() &&
				p.GetStatus() == v.GetStatus() && p.GetShmid() == v.GetShmid() && p.GetMadv() == v.GetMadv() &&
				p.GetStatus()&(image.VMAAreaVDSO|image.VMAAreaVVAR) == 0 &&
				(!file || p.GetPgoff()+p.GetEnd()-p.GetStart() == v.GetPgoff()) {
				p.End = v.End
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

// compareCheckpoints reports what differs between two dumps of one
// process but what its running changes: registers, the time left on its
// timers, its vDSO code (the second holds the proxy's patches).
func compareCheckpoints(t *testing.T, a, b *images) {
	t.Helper()
	opts := cmp.Options{
		cmpopts.EquateEmpty(),
		cmpopts.IgnoreFields(pb.ThreadInfoX86{}, "Gpregs", "Fpregs"),
		cmpopts.IgnoreFields(pb.ItimerEntry{}, "Vsec", "Vusec"),
	}
	if d := cmp.Diff(a.pstree, b.pstree, opts); d != "" {
		t.Errorf("pstree differs (-first +second):\n%s", d)
	}
	ma, mb := pb.Clone(a.mm), pb.Clone(b.mm)
	ma.Vmas, mb.Vmas = mergeVMAs(ma.Vmas), mergeVMAs(mb.Vmas)
	if d := cmp.Diff(ma, mb, opts); d != "" {
		t.Errorf("mm differs (-first +second):\n%s", d)
	}
	for tid, ca := range a.cores {
		// The task's PF_* flags tell how it came to be (PF_FORKNOEXEC)
		// and whether it used privileges (PF_SUPERPRIV): a restored
		// process differs there.
		if d := cmp.Diff(ca, b.cores[tid], opts, cmpopts.IgnoreFields(pb.TaskCoreEntry{}, "Flags")); d != "" {
			t.Errorf("core of thread %d differs (-first +second):\n%s", tid, d)
		}
	}
	// Pipes are known by their inode numbers, new ones after a restore;
	// the subject's output file grows. An end of a pipe whose other end
	// is outside the checkpoint (one the test's own parent left open to
	// it) comes back reopened, with O_LARGEFILE.
	files := func(m map[uint32]*pb.FileEntry) map[uint32]*pb.FileEntry {
		out := map[uint32]*pb.FileEntry{}
		for id, f := range m {
			f = pb.Clone(f)
			if strings.HasSuffix(f.GetReg().GetName(), ".out") {
				f.GetReg().Pos, f.GetReg().Size = 0, nil
			}
			if p := f.GetPipe(); p != nil {
				p.Flags = p.GetFlags() &^ kernel.OLargefile
			}
			out[id] = f
		}
		return out
	}
	if d := cmp.Diff(files(a.files), files(b.files), opts, cmpopts.IgnoreFields(pb.PipeEntry{}, "PipeId")); d != "" {
		t.Errorf("files differ (-first +second):\n%s", d)
	}
	fa, fb := &pb.FsEntry{}, &pb.FsEntry{}
	if err := a.dir.ReadImage(image.FS, a.pstree.GetPid(), fa); err != nil {
		t.Fatal(err)
	}
	if err := b.dir.ReadImage(image.FS, b.pstree.GetPid(), fb); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fa, fb, opts); d != "" {
		t.Errorf("fs differs (-first +second):\n%s", d)
	}
	fda, err := image.ReadAll[pb.FdinfoEntry](a.dir, image.Fdinfo, a.pstree.GetPid())
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := image.ReadAll[pb.FdinfoEntry](b.dir, image.Fdinfo, b.pstree.GetPid())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fda, fdb, opts); d != "" {
		t.Errorf("fdinfo differs (-first +second):\n%s", d)
	}
}
