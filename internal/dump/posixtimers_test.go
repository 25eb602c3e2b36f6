package dump_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// critPosixTimer is a POSIX timer as crit decodes it from the core image.
type critPosixTimer struct {
	ItID           uint32 `json:"it_id"`
	ClockID        uint32 `json:"clock_id"`
	SiSigno        uint32 `json:"si_signo"`
	ItSigevNotify  uint32 `json:"it_sigev_notify"`
	SivalPtr       uint64 `json:"sival_ptr"`
	Isec           uint64 `json:"isec"`
	Insec          uint64 `json:"insec"`
	Vsec           uint64 `json:"vsec"`
	Vnsec          uint64 `json:"vnsec"`
	NotifyThreadID int32  `json:"notify_thread_id"`
}

// TestDumpPosixTimers dumps test/subjects/posixtimers.c and reads its
// timers back with crit: ids (the deleted one missing), clocks, signals,
// values, how each notifies, the thread of SIGEV_THREAD_ID, intervals,
// and time left for the armed ones only.
func TestDumpPosixTimers(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"))
	s.WaitTicks(t, 2)
	d := dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 2)
	out, err := exec.Command("crit", "decode", "-i", filepath.Join(d.dir, "core-"+strconv.Itoa(s.Pid)+".img")).Output()
	if err != nil {
		t.Fatalf("crit decode core: %v", err)
	}
	var img struct {
		Entries []struct {
			Tc struct {
				Timers struct {
					Posix []critPosixTimer
				}
			}
		}
	}
	if err := json.Unmarshal(out, &img); err != nil || len(img.Entries) != 1 {
		t.Fatalf("crit's core JSON: %v, %d entries", err, len(img.Entries))
	}
	got := img.Entries[0].Tc.Timers.Posix
	rtmin := uint32(s.ReadyUint(t, "sigrtmin"))
	worker := int32(s.ReadyUint(t, "worker"))
	const ms = 1000000
	// Time left changes: compared below, then left out.
	want := []critPosixTimer{
		{ItID: 0, ClockID: 1, SiSigno: rtmin, ItSigevNotify: 0, SivalPtr: 0x1111, Insec: 20 * ms},
		{ItID: 2, ClockID: 0, SiSigno: rtmin + 1, ItSigevNotify: 4, SivalPtr: 0x2222, Insec: 30 * ms, NotifyThreadID: worker},
		{ItID: 3, ClockID: 7, SiSigno: 0, ItSigevNotify: 1, SivalPtr: 0x3333, Isec: 3600},
		{ItID: 4, ClockID: 1, SiSigno: rtmin + 2, ItSigevNotify: 0, SivalPtr: 0x4444},
		// CLOCK_PROCESS_CPUTIME_ID as the kernel encodes it, -6.
		{ItID: 5, ClockID: 1<<32 - 6, SiSigno: rtmin + 3, ItSigevNotify: 0, SivalPtr: 0x5555, Isec: 2},
	}
	left := map[uint32]struct{ min, max uint64 }{0: {1, 20 * ms}, 2: {1, 30 * ms}, 3: {3500e9, 3600e9}, 4: {0, 0}, 5: {3500e9, 3600e9}}
	for i := range got {
		ns := got[i].Vsec*1e9 + got[i].Vnsec
		if l := left[got[i].ItID]; ns < l.min || ns > l.max {
			t.Errorf("timer %d has %d ns left, want %d to %d", got[i].ItID, ns, l.min, l.max)
		}
		got[i].Vsec, got[i].Vnsec = 0, 0
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("POSIX timers as crit reads them (-want +got):\n%s", diff)
	}
}

// TestDumpRefusesThreadCPUTimer: a timer on CLOCK_THREAD_CPUTIME_ID
// counts the time of the thread that made it, which nothing in /proc
// names, so no restore could make it the same.
func TestDumpRefusesThreadCPUTimer(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"), "threadcpu")
	s.WaitTicks(t, 2)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "POSIX timer 6", "CLOCK_THREAD_CPUTIME_ID")
}

// TestDumpRefusesTimerRestoreIDs: a process that turned
// PR_TIMER_CREATE_RESTORE_IDS on has state no image holds.
func TestDumpRefusesTimerRestoreIDs(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "posixtimers.c"), "restoreids")
	s.WaitTicks(t, 2)
	expectRefused(t, s, dump.Options{LeaveRunning: true}, "PR_TIMER_CREATE_RESTORE_IDS is on")
}
