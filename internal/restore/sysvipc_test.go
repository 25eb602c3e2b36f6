package restore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// sysvIPC is what /proc/sysvipc says of a semaphore set and a message
// queue, with the queue's byte limit and who last changed each
// semaphore; the times are left out.
type sysvIPC struct {
	Sem    proc.SysvSem
	Msg    proc.SysvMsg
	Qbytes uint64
	Sempid []int
}

// readSysvIPC returns what /proc/sysvipc and the kernel say of set semid
// and queue msqid, and whether both are there.
func readSysvIPC(t *testing.T, semid, msqid int) (sysvIPC, bool) {
	t.Helper()
	sets, err := proc.ReadSysvSem()
	if err != nil {
		t.Fatal(err)
	}
	queues, err := proc.ReadSysvMsg()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(sets, func(s proc.SysvSem) bool { return int(s.ID) == semid })
	j := slices.IndexFunc(queues, func(m proc.SysvMsg) bool { return int(m.ID) == msqid })
	if i < 0 || j < 0 {
		return sysvIPC{}, false
	}
	got := sysvIPC{Sem: sets[i], Msg: queues[j]}
	got.Sem.Otime, got.Sem.Ctime, got.Msg.Stime, got.Msg.Rtime, got.Msg.Ctime = 0, 0, 0, 0, 0
	if got.Qbytes, err = kernel.MsgQbytes(msqid); err != nil {
		t.Fatal(err)
	}
	for n := range int(got.Sem.Nsems) {
		pid, err := kernel.SemGetPid(semid, n)
		if err != nil {
			t.Fatal(err)
		}
		got.Sempid = append(got.Sempid, pid)
	}
	return got, true
}

// takeMsgID makes a message queue of id id and key key, for a test to
// find it taken.
func takeMsgID(t *testing.T, id, key int) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/kernel/msg_next_id", []byte(fmt.Sprint(id)), 0); err != nil {
		t.Fatal(err)
	}
	got, err := kernel.MsgGet(key, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.MsgRemove(got) })
	if got != id {
		t.Fatalf("made message queue %d, want %d", got, id)
	}
}

// TestSysvIPC checkpoints test/subjects/sysvipc.c, which uses a
// semaphore set and a message queue of its own, and restores it: both
// come back with their id, key, mode, owner, the set's values and the
// queue's byte limit and messages, in order, made again when they were
// removed after the dump, or left as they are when still there; the
// subject then checks them itself. Made again, the kernel says the
// restored process used them last, as a dump decides. A set or queue
// that holds the id or key is refused; a failed restore removes what it
// made.
func TestSysvIPC(t *testing.T) {
	testutil.RequireRoot(t)
	rm := func(t *testing.T, semid, msqid int) {
		if err := errors.Join(kernel.SemRemove(semid), kernel.MsgRemove(msqid)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// afterDump runs once the subject is dumped and reaped.
		afterDump func(t *testing.T, semid, msqid int, semkey uint32)
		// made says the restore makes them (else they are still there).
		made    bool
		failAt  string
		wantErr error
	}{
		{name: "removed", made: true, afterDump: func(t *testing.T, semid, msqid int, _ uint32) { rm(t, semid, msqid) }},
		{name: "kept"},
		{name: "id taken", wantErr: restore.ErrSysvIPCTaken, afterDump: func(t *testing.T, semid, msqid int, _ uint32) {
			rm(t, semid, msqid)
			takeMsgID(t, msqid, unix.IPC_PRIVATE)
		}},
		{name: "key taken", wantErr: restore.ErrSysvIPCTaken, afterDump: func(t *testing.T, semid, msqid int, semkey uint32) {
			rm(t, semid, msqid)
			id, err := kernel.SemGet(int(int32(semkey)), 1, unix.IPC_CREAT|0o600)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kernel.SemRemove(id) })
		}},
		{name: "failed", failAt: "pages", wantErr: restore.ErrInjected, afterDump: func(t *testing.T, semid, msqid int, _ uint32) { rm(t, semid, msqid) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sysvipc.c"))}
			semid, msqid := int(s.ReadyUint(t, "semid")), int(s.ReadyUint(t, "msqid"))
			semkey := uint32(s.ReadyUint(t, "semkey"))
			t.Cleanup(func() { kernel.SemRemove(semid); kernel.MsgRemove(msqid) })
			s.WaitTicks(t, 2)
			before, ok := readSysvIPC(t, semid, msqid)
			if !ok {
				t.Fatal("the subject's set or queue is not listed")
			}
			c := dumpAndReap(t, s)
			if tc.afterDump != nil {
				tc.afterDump(t, semid, msqid, semkey)
			}
			if tc.wantErr != nil {
				log, buf := newLog()
				_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log, FailAt: tc.failAt})
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("restore: %v, want %v\nlog:\n%s", err, tc.wantErr, buf)
				}
				t.Logf("refused: %v", err)
				if after, ok := readSysvIPC(t, semid, msqid); ok {
					t.Errorf("after the failed restore, set %d and queue %d are there: %+v", semid, msqid, after)
				}
				return
			}
			_, log := restoreSubject(t, s, c, restore.Options{})
			want := map[bool]string{true: "made again", false: "still there"}[tc.made]
			if n := strings.Count(log.String(), want); n != 2 {
				t.Errorf("restore log says %q %d times, want 2 (set and queue):\n%s", want, n, log)
			}
			after, ok := readSysvIPC(t, semid, msqid)
			if !ok {
				t.Fatalf("set %d or queue %d is gone", semid, msqid)
			}
			if tc.made {
				// The restored process set the semaphores, received a
				// message and sent the last.
				for i := range before.Sempid {
					before.Sempid[i] = s.Pid
				}
				before.Msg.Lrpid = int32(s.Pid)
			}
			if d := cmp.Diff(before, after); d != "" {
				t.Errorf("set and queue (-dumped +restored):\n%s", d)
			}
			if tc.made {
				redumpKeeps(t, s.Pid, semid, msqid)
			}
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			s.WaitLine(t, "checked sem=3,2,7,32000 msgs=5")
			s.WaitTicks(t, 2)
		})
	}
}

// redumpKeeps dumps the restored process pid, leaving it running, and
// checks that the dump keeps set semid, its 4 values, and queue msqid,
// its 5 messages: the restore made the process their last user.
func redumpKeeps(t *testing.T, pid, semid, msqid int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "again")
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: pid, Dir: dir, Log: log, LeaveRunning: true}); err != nil {
		t.Fatalf("dump the restored process: %v\nlog:\n%s", err, buf)
	}
	im := readImages(t, dir, pid)
	ns := im.cores[uint32(pid)].GetIds().GetIpcNsId()
	var got []string
	sets, queues := testutil.ReadSysvIPC(t, im.dir, ns)
	for _, s := range sets {
		got = append(got, fmt.Sprintf("set %d %v", s.Entry.GetDesc().GetId(), s.Values))
	}
	for _, q := range queues {
		got = append(got, fmt.Sprintf("queue %d: %d messages", q.Entry.GetDesc().GetId(), len(q.Msgs)))
	}
	want := []string{fmt.Sprintf("set %d [3 2 7 32000]", semid), fmt.Sprintf("queue %d: 5 messages", msqid)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("a new dump of the restored process (-want +got):\n%s", d)
	}
}

// TestSysvIPCWaited checkpoints test/subjects/sysvipc.c with a child
// blocked in a semop on a set nothing has changed, removes the sets and
// the queue it used and restores it: they are made again, the child
// still waits on the set, goes on once another process sets it, then
// waits on its second queue, which nothing had used (left alone, not
// removed), and takes the message another process sends.
func TestSysvIPCWaited(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sysvipc.c"), "wait")}
	semid, msqid := int(s.ReadyUint(t, "semid")), int(s.ReadyUint(t, "msqid"))
	waitsem, waitmsq, child := int(s.ReadyUint(t, "waitsem")), int(s.ReadyUint(t, "waitmsq")), int(s.ReadyUint(t, "child"))
	// The child dies with its parent (PR_SET_PDEATHSIG).
	t.Cleanup(func() {
		kernel.SemRemove(semid)
		kernel.MsgRemove(msqid)
		kernel.SemRemove(waitsem)
		kernel.MsgRemove(waitmsq)
	})
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(child); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(kernel.SemRemove(semid), kernel.MsgRemove(msqid), kernel.SemRemove(waitsem)); err != nil {
		t.Fatal(err)
	}
	_, log := restoreSubject(t, s, c, restore.Options{})
	testutil.KillPidsAtCleanup(t, s.Pid, child)
	if n := strings.Count(log.String(), "made again"); n != 3 {
		t.Errorf("restore log says %q %d times, want 3 (2 sets, 1 queue):\n%s", "made again", n, log)
	}
	s.WaitTicks(t, 3)
	if strings.Contains(s.Output(), "child got") {
		t.Fatalf("the child went on before the semaphore was set:\n%s", s.Output())
	}
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(waitsem), 0, kernel.SemSetval, 1, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	s.WaitLine(t, "child got sem")
	if err := kernel.MsgSend(waitmsq, 9, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	s.WaitLine(t, "child got hello")
	unix.Kill(s.Pid, unix.SIGUSR1)
	s.WaitLine(t, "checked sem=3,2,7,32000 msgs=5")
}
