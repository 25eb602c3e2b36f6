package dump_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// subjectMsgs are the messages test/subjects/sysvipc.c queues, in order.
func subjectMsgs() []image.Msg {
	big := make([]byte, 5000)
	for i := range big {
		big[i] = byte(i*7 + 1)
	}
	return []image.Msg{{Type: 1, Text: []byte("first\x00")}, {Type: 42, Text: []byte("second message\x00")},
		{Type: 1, Text: big}, {Type: 7, Text: []byte{}}, {Type: 3, Text: []byte("last\x00")}}
}

// startSysvIPC starts test/subjects/sysvipc.c and returns its semaphore
// set's and message queue's ids and keys, removed at the test's end.
func startSysvIPC(t *testing.T, args ...string) (s *testutil.Subject, semid, msqid int, semkey, msgkey uint32) {
	t.Helper()
	s = testutil.StartSubject(t, testutil.BuildC(t, "sysvipc.c"), args...)
	semid, msqid = int(s.ReadyUint(t, "semid")), int(s.ReadyUint(t, "msqid"))
	t.Cleanup(func() { kernel.SemRemove(semid); kernel.MsgRemove(msqid) })
	return s, semid, msqid, uint32(s.ReadyUint(t, "semkey")), uint32(s.ReadyUint(t, "msgkey"))
}

// TestDumpSysvIPC dumps test/subjects/sysvipc.c and leaves it running:
// its semaphore set and message queue are in the images with their key,
// id, mode, owner, values, byte limit and messages in order, which the
// dump leaves queued; a set and a queue it does not use (another process
// made and last used them) are not; crit decodes the images.
func TestDumpSysvIPC(t *testing.T) {
	testutil.RequireRoot(t)
	otherSem, err := kernel.SemGet(unix.IPC_PRIVATE, 2, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.SemRemove(otherSem) })
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(otherSem), 1, kernel.SemSetval, 5, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	otherMsq, err := kernel.MsgGet(unix.IPC_PRIVATE, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.MsgRemove(otherMsq) })
	if err := kernel.MsgSend(otherMsq, 1, []byte("not the subject's")); err != nil {
		t.Fatal(err)
	}
	s, semid, msqid, semkey, msgkey := startSysvIPC(t)
	s.WaitTicks(t, 2)
	d := dumpProcess(t, s.Pid, true)
	im := readImages(t, d.dir, s.Pid)
	ipcNS := im.leader().GetIds().GetIpcNsId()

	sets, queues := testutil.ReadSysvIPC(t, im.dir, ipcNS)
	var got []string
	for _, set := range sets {
		e := set.Entry.GetDesc()
		got = append(got, fmt.Sprintf("id %d key %#x mode %#o owner %d:%d nsems %d values %v",
			e.GetId(), e.GetKey(), e.GetMode(), e.GetUid(), e.GetGid(), set.Entry.GetNsems(), set.Values))
	}
	want := []string{fmt.Sprintf("id %d key %#x mode 0640 owner 0:0 nsems 4 values [3 2 7 32000]", semid, semkey)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("semaphore sets (-want +got):\n%s", d)
	}

	if len(queues) != 1 {
		t.Fatalf("%d message queues in the images, want 1", len(queues))
	}
	e := queues[0].Entry.GetDesc()
	gotQ := fmt.Sprintf("id %d key %#x mode %#o owner %d:%d qbytes %d qnum %d",
		e.GetId(), e.GetKey(), e.GetMode(), e.GetUid(), e.GetGid(), queues[0].Entry.GetQbytes(), queues[0].Entry.GetQnum())
	if wantQ := fmt.Sprintf("id %d key %#x mode 0604 owner 0:0 qbytes 10000 qnum 5", msqid, msgkey); gotQ != wantQ {
		t.Errorf("message queue: %s, want %s", gotQ, wantQ)
	}
	if d := cmp.Diff(subjectMsgs(), queues[0].Msgs, cmp.Comparer(bytes.Equal)); d != "" {
		t.Errorf("messages (-want +got):\n%s", d)
	}
	// MSG_COPY left them queued.
	listed, err := proc.ReadSysvMsg()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(listed, func(m proc.SysvMsg) bool { return int(m.ID) == msqid }); i < 0 || listed[i].Qnum != 5 || listed[i].Lrpid != 0 {
		t.Errorf("the queue after the dump: %+v", listed)
	}
	critDecode(t, d.dir)
	s.WaitTicks(t, 3)
}

// TestDumpSemUndo checks that a process with a semaphore undo list
// (SEM_UNDO), whose adjustments no interface reads, is refused, and goes
// on.
func TestDumpSemUndo(t *testing.T) {
	testutil.RequireRoot(t)
	s, _, _, _, _ := startSysvIPC(t, "undo")
	s.WaitTicks(t, 2)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "semaphore undo list", fmt.Sprint(s.Pid))
}

// TestDumpSysvIPCOtherIPCNamespace checks that a process using a
// semaphore set and a message queue of another IPC namespace than cryo's
// is refused, and goes on.
func TestDumpSysvIPCOtherIPCNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("needs unshare (util-linux): %v", err)
	}
	s := testutil.StartSubject(t, unshare, "--ipc", testutil.BuildC(t, "sysvipc.c"))
	s.WaitTicks(t, 2)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "ipc namespace")
}

// TestDumpSysvIPCWaited dumps test/subjects/sysvipc.c with a child
// blocked in a semop on a set and then in a msgrcv on a queue that
// nothing has changed or sent to: the dump keeps the set it waits on
// and, once it waits there, the queue, and the child goes on.
func TestDumpSysvIPCWaited(t *testing.T) {
	testutil.RequireRoot(t)
	s, semid, msqid, _, _ := startSysvIPC(t, "wait")
	// The child dies with the subject (PR_SET_PDEATHSIG).
	waitsem, waitmsq, child := int(s.ReadyUint(t, "waitsem")), int(s.ReadyUint(t, "waitmsq")), int(s.ReadyUint(t, "child"))
	t.Cleanup(func() { kernel.SemRemove(waitsem); kernel.MsgRemove(waitmsq) })
	kept := func(nr int, want ...string) {
		t.Helper()
		waitInSyscall(t, child, nr)
		d := dumpProcess(t, s.Pid, true)
		im := readImages(t, d.dir, s.Pid)
		ns := im.leader().GetIds().GetIpcNsId()
		var got []string
		sets, queues := testutil.ReadSysvIPC(t, im.dir, ns)
		for _, set := range sets {
			got = append(got, fmt.Sprintf("set %d %v", set.Entry.GetDesc().GetId(), set.Values))
		}
		for _, q := range queues {
			got = append(got, fmt.Sprintf("queue %d: %d messages", q.Entry.GetDesc().GetId(), len(q.Msgs)))
		}
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("kept (-want +got):\n%s", d)
		}
	}
	own := []string{fmt.Sprintf("set %d [3 2 7 32000]", semid), fmt.Sprintf("queue %d: 5 messages", msqid)}
	kept(unix.SYS_SEMTIMEDOP, append(own, fmt.Sprintf("set %d [0]", waitsem))...)
	if _, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(waitsem), 0, kernel.SemSetval, 1, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	s.WaitLine(t, "child got sem")
	// The child took the semaphore (sempid) and waits on the queue.
	kept(unix.SYS_MSGRCV, append(own, fmt.Sprintf("set %d [0]", waitsem), fmt.Sprintf("queue %d: 0 messages", waitmsq))...)
	if err := kernel.MsgSend(waitmsq, 9, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	s.WaitLine(t, "child got hello")
	s.WaitTicks(t, 2)
}

// waitInSyscall waits until process pid is blocked in system call nr.
func waitInSyscall(t *testing.T, pid, nr int) {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for {
		b, err := os.ReadFile(proc.Path(pid, "syscall"))
		if err == nil && strings.HasPrefix(string(b), fmt.Sprint(nr)+" ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in system call %d: %q, %v", pid, nr, b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
