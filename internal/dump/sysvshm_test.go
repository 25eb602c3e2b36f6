package dump_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpSysvShm dumps test/subjects/sysvshm.c, attached three times to
// a segment of its own, and leaves it running: the segment is in the
// IPC namespace's image once, as /proc/sysvipc/shm lists it, its
// contents whole; each attachment a VMA of it at its offset, the
// read-only ones with their file read-only; the dump neither attaches
// nor detaches it; crit decodes the images.
func TestDumpSysvShm(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "attached"},
		// Removed: its key reads 0, the images keep the one it was made
		// with, which names its attachments.
		{name: "removed", args: []string{"rmid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "sysvshm.c"), tc.args...)
			id, key := int(s.ReadyUint(t, "shmid")), uint32(s.ReadyUint(t, "key"))
			t.Cleanup(func() { unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
			s.WaitTicks(t, 2)
			before := segment(t, id)
			d := dumpProcess(t, s.Pid, true)
			if after := segment(t, id); after != before {
				t.Errorf("segment after the dump: %+v, before: %+v", after, before)
			}
			im := readImages(t, d.dir, s.Pid)
			es, err := image.ReadAll[pb.IpcShmEntry](im.dir, image.IpcShm, im.leader().GetIds().GetIpcNsId())
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 {
				t.Fatalf("%d segments in the images, want 1", len(es))
			}
			e, desc := es[0], es[0].GetDesc()
			got := []any{desc.GetId(), desc.GetKey(), desc.GetMode(), desc.GetUid(), desc.GetGid(), e.GetSize(), e.GetInPagemaps()}
			want := []any{uint32(id), key, before.Mode, before.UID, before.GID, before.Size, true}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("segment entry (id, key, mode, uid, gid, size, in_pagemaps) (-want +got):\n%s", d)
			}
			var vmas []string
			for _, v := range im.mm.Vmas {
				if v.GetStatus()&image.VMAAreaSysvIPC != 0 {
					vmas = append(vmas, vmaLine(v.GetStart(), v.GetEnd(), v.GetPgoff(), v.GetShmid(), v.GetProt(), v.GetFlags(), v.GetStatus(), v.GetFdflags()))
				}
			}
			var wantVMAs []string
			for _, m := range d.mapsBefore {
				if m.Inode == uint64(id) && strings.HasPrefix(m.Path, "/SYSV") {
					// The read-only attachments (SHM_RDONLY) are read-only
					// from their start; the read-write one's third page,
					// made read-only by mprotect, is not.
					fdflags := uint32(unix.O_RDWR)
					if m.Perms[1] == '-' && m.Offset == 0 {
						fdflags = unix.O_RDONLY
					}
					wantVMAs = append(wantVMAs, vmaLine(m.Start, m.End, m.Offset, uint64(id), protOf(m.Perms), unix.MAP_SHARED|unix.MAP_ANONYMOUS,
						image.VMAAreaRegular|image.VMAAnonShared|image.VMAAreaSysvIPC, fdflags))
				}
			}
			if d := cmp.Diff(wantVMAs, vmas); d != "" {
				t.Errorf("attachments (-maps +images):\n%s", d)
			}
			pr, err := im.dir.OpenShmemPages(uint64(id))
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			var pages uint64
			for {
				e, err := pr.Next()
				if err != nil {
					break
				}
				pages += e.NrPages
			}
			// 3 pages and 100 bytes, the last page whole; the second
			// page, never written, was read by the subject's checks (a
			// hole read through a mapping gets a page of zeros).
			if pages != 4 {
				t.Errorf("%d pages of the segment in the images, want 4", pages)
			}
			critDecode(t, d.dir)
		})
	}
}

func vmaLine(start, end, pgoff, shmid uint64, prot, flags, status, fdflags uint32) string {
	return fmt.Sprintf("%#x-%#x off %#x shmid %d prot %#x flags %#x status %#x fdflags %d", start, end, pgoff, shmid, prot, flags, status, fdflags)
}

// segment returns segment id as /proc/sysvipc/shm lists it.
func segment(t *testing.T, id int) proc.SysvShm {
	t.Helper()
	segs, err := proc.ReadSysvShm()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if int(s.ID) == id {
			return s
		}
	}
	t.Fatalf("segment %d not in /proc/sysvipc/shm", id)
	return proc.SysvShm{}
}

// TestDumpSysvShmOtherIPCNamespace checks that a process in another IPC
// namespace than cryo's is refused, and goes on.
func TestDumpSysvShmOtherIPCNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("needs unshare (util-linux): %v", err)
	}
	s := testutil.StartSubject(t, unshare, "--ipc", testutil.BuildC(t, "sysvshm.c"))
	s.WaitTicks(t, 2)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "ipc namespace")
}
