package restore_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// siQueue is SI_QUEUE, the si_code of a signal sent with sigqueue(3).
const siQueue = -1

// queueSignal sends sig with value to process pid, or to its thread tid if
// not 0, as sigqueue(3) does.
func queueSignal(t *testing.T, pid, tid int, sig unix.Signal, value int32) {
	t.Helper()
	info := make([]byte, kernel.SiginfoSize)
	le := binary.LittleEndian
	le.PutUint32(info[0:], uint32(sig))
	code := int32(siQueue)
	le.PutUint32(info[8:], uint32(code))
	le.PutUint32(info[16:], uint32(os.Getpid())) // si_pid
	le.PutUint32(info[20:], uint32(os.Getuid())) // si_uid
	le.PutUint32(info[24:], uint32(value))       // si_value
	var errno unix.Errno
	if tid == 0 {
		_, _, errno = unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(sig), uintptr(unsafe.Pointer(&info[0])))
	} else {
		_, _, errno = unix.Syscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(pid), uintptr(tid), uintptr(sig), uintptr(unsafe.Pointer(&info[0])), 0, 0)
	}
	if errno != 0 {
		t.Fatalf("queue signal %d to %d/%d: %v", sig, pid, tid, errno)
	}
}

// TestRestorePendingSignals restores a process with signals pending, for
// the process and for a thread, with the values they were sent with: each
// comes back pending, once, with its siginfo.
func TestRestorePendingSignals(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sigqueue.c"))}
	s.WaitTicks(t, 2)
	rtmin := unix.Signal(s.ReadyUint(t, "sigrtmin"))
	queueSignal(t, s.Pid, 0, rtmin, 1111)
	queueSignal(t, s.Pid, 0, rtmin, 2222)
	queueSignal(t, s.Pid, s.Pid, rtmin+1, 3333)
	if err := unix.Kill(s.Pid, unix.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	// A tgkill to the other thread (si_code SI_TKILL), which only that
	// thread may queue again.
	tids, err := proc.ReadTasks(s.Pid)
	if err != nil || len(tids) != 2 {
		t.Fatalf("threads %v, %v; want the main one and the sleeper", tids, err)
	}
	sleeper := tids[0] + tids[1] - s.Pid
	if err := unix.Tgkill(s.Pid, sleeper, unix.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	sleeperPending := func() {
		t.Helper()
		st, err := proc.ReadTaskStatus(s.Pid, sleeper)
		if err != nil {
			t.Fatal(err)
		}
		if st.SigPnd != 1<<(unix.SIGUSR2-1) {
			t.Fatalf("thread %d has pending %#x, want SIGUSR2", sleeper, st.SigPnd)
		}
	}
	sleeperPending()
	wantMask := fmt.Sprintf("%#x", uint64(1)<<(unix.SIGUSR2-1)|uint64(1)<<(rtmin-1)|uint64(1)<<rtmin)
	waitPending := func() {
		t.Helper()
		deadline := time.Now().Add(testutil.SubjectTimeout)
		for s.LastTick()["pending"] != wantMask {
			if time.Now().After(deadline) {
				t.Fatalf("pending %s, want %s:\n%s", s.LastTick()["pending"], wantMask, s.Output())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPending()
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	waitPending()
	sleeperPending()

	// Take them all: each once, with what it was sent with.
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for !strings.Contains(s.Output(), "took done\n") {
		if time.Now().After(deadline) || !s.Alive() {
			t.Fatalf("the subject did not take its signals:\n%s", s.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var took []string
	for _, l := range strings.Split(s.Output(), "\n") {
		if strings.HasPrefix(l, "took sig=") {
			took = append(took, strings.TrimPrefix(l, "took "))
		}
	}
	self := strconv.Itoa(os.Getpid())
	// Thread-directed first, then the process's, lowest signal first, and
	// queued real-time signals in the order they were sent.
	want := []string{
		fmt.Sprintf("sig=%d code=%d pid=%s value=3333", rtmin+1, siQueue, self),
		fmt.Sprintf("sig=%d code=0 pid=%s value=0", unix.SIGUSR2, self),
		fmt.Sprintf("sig=%d code=%d pid=%s value=1111", rtmin, siQueue, self),
		fmt.Sprintf("sig=%d code=%d pid=%s value=2222", rtmin, siQueue, self),
	}
	if !slices.Equal(took, want) {
		t.Errorf("signals taken after the restore:\n%s\nwant:\n%s", strings.Join(took, "\n"), strings.Join(want, "\n"))
	}
	s.WaitTicks(t, 3)
	if got := s.LastTick()["pending"]; got != "0" {
		t.Errorf("pending %s after taking them all, want 0", got)
	}
}
