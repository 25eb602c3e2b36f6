package restore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// ipcNS is the id of the IPC namespace in the images.
const ipcNS = 4

// sysvSegment returns segment id as /proc/sysvipc/shm lists it, and
// whether it is there.
func sysvSegment(t *testing.T, id int) (proc.SysvShm, bool) {
	t.Helper()
	segs, err := proc.ReadSysvShm()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if int(s.ID) == id {
			return s, true
		}
	}
	return proc.SysvShm{}, false
}

// sysvAttachments lists the attachments of segment id in process pid's
// maps: their ranges, protections and offsets.
func sysvAttachments(t *testing.T, pid, id int) []string {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range maps {
		if strings.HasPrefix(m.Path, "/SYSV") && m.Inode == uint64(id) {
			out = append(out, fmt.Sprintf("%x-%x %s %x %s", m.Start, m.End, m.Perms, m.Offset, m.Path))
		}
	}
	return out
}

// takeShmID makes a segment of id id and key key, for a test to find it
// taken.
func takeShmID(t *testing.T, id, key int) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/kernel/shm_next_id", []byte(fmt.Sprint(id)), 0); err != nil {
		t.Fatal(err)
	}
	got, err := unix.SysvShmGet(key, 8192, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.SysvShmCtl(got, unix.IPC_RMID, nil) })
	if got != id {
		t.Fatalf("made segment %d, want %d", got, id)
	}
}

// TestSysvShm checkpoints test/subjects/sysvshm.c, attached three times
// to a segment of its own (read-write, split by an mprotect; read-only;
// read-only and executable), and restores it: the segment comes back
// with its id, key, size, mode and owner, made again when it was removed
// after the dump or attached again, shared, when it is still there; one
// removed by the subject (IPC_RMID) comes back marked for destruction; in
// a tree, parent and child attach one segment again. The subject checks
// its contents through every attachment and that writes through one are
// seen through the others.
func TestSysvShm(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		args []string
		// afterDump runs once the subject is dumped and reaped, with the
		// segment's id and key.
		afterDump func(t *testing.T, id, key int)
		// made says the restore makes the segment (else it attaches the
		// one still there).
		made bool
		// failAt fails the restore at that step (restore.Options.FailAt).
		failAt string
		// images changes the images.
		images  func(t *testing.T, dir string)
		wantErr error
	}{
		{name: "removed", made: true, afterDump: func(t *testing.T, id, key int) {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "kept"},
		{name: "rmid", args: []string{"rmid"}, made: true},
		{name: "tree", args: []string{"fork"}, made: true, afterDump: func(t *testing.T, id, key int) {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Fatal(err)
			}
		}},
		// Attached before the process dropped its privileges: the
		// segment still there is refused (an image could name any
		// segment), one made from the images comes back.
		{name: "denied", args: []string{"drop"}, wantErr: restore.ErrSysvShmDenied},
		{name: "dropped-removed", args: []string{"drop"}, made: true, afterDump: func(t *testing.T, id, key int) {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Fatal(err)
			}
		}},
		// A failed restore removes the segment it made.
		{name: "failed", failAt: "pages", wantErr: restore.ErrInjected, afterDump: func(t *testing.T, id, key int) {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Fatal(err)
			}
		}},
		// Images that lost the segment, or say it is smaller than its
		// attachments.
		{name: "segment image lost", wantErr: restore.ErrImage, images: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, image.IpcShm.FileName(ipcNS))); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "segment too small", wantErr: restore.ErrImage, images: func(t *testing.T, dir string) {
			d, err := image.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			es, err := image.ReadAll[pb.IpcShmEntry](d, image.IpcShm, ipcNS)
			if err != nil {
				t.Fatal(err)
			}
			es[0].Size = pageSize
			if err := os.Remove(filepath.Join(dir, image.IpcShm.FileName(ipcNS))); err != nil {
				t.Fatal(err)
			}
			if err := image.WriteAll(d, image.IpcShm, ipcNS, es); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "taken", wantErr: restore.ErrSysvShmTaken, afterDump: func(t *testing.T, id, key int) {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Fatal(err)
			}
			takeShmID(t, id, unix.IPC_PRIVATE)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sysvshm.c"), tc.args...)}
			id, key, child := int(s.ReadyUint(t, "shmid")), int(int32(s.ReadyUint(t, "key"))), int(s.ReadyUint(t, "child"))
			// The child dies with its parent (PR_SET_PDEATHSIG).
			t.Cleanup(func() { unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
			s.WaitTicks(t, 3)
			before, _ := sysvSegment(t, id)
			attached := sysvAttachments(t, s.Pid, id)
			if len(attached) != 5 {
				t.Fatalf("subject's attachments: %q, want 5", attached)
			}
			c := dumpAndReap(t, s)
			if child != 0 {
				if err := testutil.WaitPidsFree(child); err != nil {
					t.Fatal(err)
				}
			}
			if tc.afterDump != nil {
				tc.afterDump(t, id, key)
			}
			if tc.images != nil {
				tc.images(t, c.dir)
			}
			if tc.wantErr != nil {
				log, buf := newLog()
				_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log, FailAt: tc.failAt})
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("restore: %v, want %v\nlog:\n%s", err, tc.wantErr, buf)
				}
				t.Logf("refused: %v", err)
				seg, ok := sysvSegment(t, id)
				switch {
				case tc.failAt != "" && ok:
					t.Errorf("segment %d, made by the failed restore, is still there: %+v", id, seg)
				case tc.failAt == "" && (!ok || seg.Nattch != 0):
					t.Errorf("segment %d after the failed restore: %+v, %v", id, seg, ok)
				}
				return
			}
			_, log := restoreSubject(t, s, c, restore.Options{})
			if child != 0 {
				testutil.KillPidsAtCleanup(t, s.Pid, child)
			}
			for _, want := range []string{map[bool]string{true: "System V shared memory made again", false: "System V shared memory still there"}[tc.made]} {
				if !strings.Contains(log.String(), want) {
					t.Errorf("restore log lacks %q:\n%s", want, log)
				}
			}
			s.WaitTicks(t, 10)
			if d := cmp.Diff(attached, sysvAttachments(t, s.Pid, id)); d != "" {
				t.Errorf("attachments (-dumped +restored):\n%s", d)
			}
			if child != 0 {
				if d := cmp.Diff(attached, sysvAttachments(t, child, id)); d != "" {
					t.Errorf("child's attachments (-dumped +restored):\n%s", d)
				}
			}
			after, ok := sysvSegment(t, id)
			if !ok {
				t.Fatalf("segment %d is gone", id)
			}
			// Who made it and attached last, and when, are the restore's.
			same := func(s proc.SysvShm) proc.SysvShm {
				return proc.SysvShm{Key: s.Key, ID: s.ID, Mode: s.Mode, Size: s.Size, Nattch: s.Nattch, UID: s.UID, GID: s.GID, CUID: s.CUID, CGID: s.CGID}
			}
			if d := cmp.Diff(same(before), same(after)); d != "" {
				t.Errorf("segment (-dumped +restored):\n%s", d)
			}
			if tc.name == "rmid" && (after.Mode&proc.ShmDest == 0 || after.Key != 0) {
				t.Errorf("segment removed before the dump: key %#x mode %#o, want 0 and SHM_DEST", after.Key, after.Mode)
			}
			if tc.made {
				return
			}
			// Still there: the subject attaches the very segment another
			// process attaches, and sees what that one writes.
			b, err := unix.SysvShmAttach(id, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.SysvShmDetach(b)
			copy(b[:4], []byte{0xed, 0xfe, 0, 0})
			s.WaitTicks(t, 3)
			if got := s.LastTick()["ext"]; got != "65261" {
				t.Errorf("the subject reads %s as the first word, want 65261, written by another process", got)
			}
		})
	}
}
