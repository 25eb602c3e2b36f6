package restore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// threadFlags make a thread of the restored process, as pthread_create
// does.
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// createThreads clones every thread but the leader with its dumped TID.
func (r *restorer) createThreads() error {
	tids := make([]int, 0, len(r.c.threads))
	for _, tid := range r.c.threads[1:] {
		tids = append(tids, int(tid))
	}
	err := r.tr.CloneThreads(r.pid, kernel.CloneArgs{Flags: threadFlags}, tids)
	if se := (*ptrace.SyscallError)(nil); errors.As(err, &se) {
		tid := tids[se.Index]
		return fmt.Errorf("create thread %d: %w", tid, r.explainTaken(tid, err))
	}
	if err != nil {
		return fmt.Errorf("create threads: %w", err)
	}
	return nil
}

// zombieWait bounds how long a restore waits for the zombie of the
// dumped process to be reaped: `cryo dump` then `cryo restore` at once
// finds it still holding the PID until its parent waits for it.
const zombieWait = 5 * time.Second

// awaitZombies waits, up to zombieWait, until no zombie holds one of
// ids.
func (t *tree) awaitZombies(ids []uint32) {
	deadline := time.Now().Add(zombieWait)
	for _, id := range ids {
		logged := false
		for time.Now().Before(deadline) {
			st, err := proc.ReadStat(int(id))
			if err != nil || st.State != 'Z' {
				break
			}
			if !logged {
				t.log.Info("waiting for a zombie holding the pid to be reaped", "pid", id, "parent", st.PPid, "at-most", zombieWait)
				logged = true
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// explainTaken names the process holding an id that clone3 could not have.
func (t *tree) explainTaken(id int, err error) error {
	if err == nil || !errors.Is(err, unix.EEXIST) {
		return err
	}
	comm, cerr := proc.ReadComm(id)
	st, serr := proc.ReadStat(id)
	switch {
	case cerr != nil:
		var ok bool
		if comm, ok = groupHolder(id); !ok {
			comm = "a task not visible here"
		}
	case serr == nil && st.State == 'Z':
		comm = fmt.Sprintf("the zombie of %s, which its parent, pid %d, has not reaped", comm, st.PPid)
	case isCryo(id):
		// Named as the user's process, it would mislead: it is cryo's
		// own (a dump's worker or another restore).
		comm = "a cryo process"
	}
	return fmt.Errorf("%w: %d is taken by %s", ErrPidTaken, id, comm)
}

// groupHolder names what holds id when no task has it, a process group
// or session of that id, which lives on while a member does, and reports
// whether one does.
func groupHolder(id int) (string, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil && (st.Pgrp == id || st.Session == id) {
			return fmt.Sprintf("the process group or session of pid %d (%s), whose leader has exited", pid, st.Comm), true
		}
	}
	return "", false
}

// isCryo reports whether task id runs this very cryo binary.
func isCryo(id int) bool {
	same, err := sameFile(proc.Path(id, "exe"), "/proc/self/exe")
	return err == nil && same
}

// restoreThread sets what each thread holds of its own besides registers:
// robust futex list, clear_child_tid, alternate signal stack, rseq,
// scheduling policy and nice value, name. cur is the scheduling it was
// born with.
func (r *restorer) restoreThread(tid int, core *pb.CoreEntry, cur proc.Stat) error {
	tc := core.ThreadCore
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	// The calls go in one batch; what they point at, in the scratch
	// buffer, each at an offset of its own.
	var calls []ptrace.Sys
	var whats []string
	inject := func(what string, nr int, args ...uint64) {
		c := ptrace.Sys{Nr: nr}
		copy(c.Args[:], args)
		calls, whats = append(calls, c), append(whats, what)
	}
	const sasAt, schedAt, commAt = 0, 64, 128
	if tc.GetFutexRla() != 0 {
		inject("set robust list", unix.SYS_SET_ROBUST_LIST, tc.GetFutexRla(), uint64(tc.GetFutexRlaLen()))
	}
	inject("set clear_child_tid", unix.SYS_SET_TID_ADDRESS, core.ThreadInfo.GetClearTidAddr())
	if sas := tc.GetSas(); sas != nil && sas.GetSsFlags()&kernel.SsDisable == 0 {
		if err := r.tr.WriteValue(scratch+sasAt, kernel.StackT{Sp: sas.GetSsSp(), Flags: int32(sas.GetSsFlags()), Size: sas.GetSsSize()}); err != nil {
			return err
		}
		inject("set sigaltstack", unix.SYS_SIGALTSTACK, scratch+sasAt, 0)
	}
	if rs := tc.GetRseqEntry(); rs != nil && rs.GetRseqAbiPointer() != 0 {
		inject("register rseq", unix.SYS_RSEQ, rs.GetRseqAbiPointer(), uint64(rs.GetRseqAbiSize()), 0, uint64(rs.GetSignature()))
	}
	// Scheduling is per thread, and each starts with cryo's, which the
	// stub inherited: set what differs. The policy first: setting it
	// keeps the nice value, which follows.
	pol := tc.GetSchedPolicy() &^ kernel.SchedResetOnFork
	resetOnFork := tc.GetSchedPolicy()&kernel.SchedResetOnFork != 0
	if prio := tc.GetSchedPrio(); pol != cur.Policy || prio != cur.RTPriority || resetOnFork {
		if err := r.tr.WriteValue(scratch+schedAt, kernel.SchedParam{Priority: int32(prio)}); err != nil {
			return err
		}
		inject("set scheduling policy", unix.SYS_SCHED_SETSCHEDULER, 0, uint64(tc.GetSchedPolicy()), scratch+schedAt)
	}
	// The dump keeps only threads with the default timer slack; this one
	// has cryo's, which may not be.
	if pol != unix.SCHED_FIFO && pol != unix.SCHED_RR {
		inject("set timer slack", unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, defaultTimerSlack, 0, 0, 0)
	}
	if nice := tc.GetSchedNice(); int64(nice) != cur.Nice {
		inject("set nice value", unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, uint64(int64(nice)))
	}
	if comm := tc.GetComm(); comm != "" {
		// Only the thread's own group may write its comm file.
		if err := r.tr.WriteMem(scratch+commAt, append([]byte(comm), 0)); err != nil {
			return err
		}
		inject("set name", unix.SYS_PRCTL, unix.PR_SET_NAME, scratch+commAt)
	}
	if err := r.syscalls(tid, calls, func(i int) string { return fmt.Sprintf("tid %d: %s", tid, whats[i]) }); err != nil {
		return err
	}
	// A thread born of its leader has the process's login UID.
	if uid := r.threadExtras[uint32(tid)].loginUID; uid != nil {
		return r.setLoginUID(tid, *uid)
	}
	return nil
}

// finalRegs returns a thread's registers to resume with, after setting its
// FPU state and signal mask.
func (r *restorer) finalRegs(tid int, core *pb.CoreEntry) (unix.PtraceRegs, error) {
	regs, err := cpu.RegsFromImage(core.ThreadInfo.GetGpregs())
	if err != nil {
		return unix.PtraceRegs{}, fmt.Errorf("tid %d: %w", tid, err)
	}
	fp, err := r.c.fpregs(tid)
	if err != nil {
		return unix.PtraceRegs{}, err
	}
	xstate, err := r.host.XStateFromImage(fp, r.opts.DropMissingCPU)
	if err != nil {
		return unix.PtraceRegs{}, fmt.Errorf("tid %d: %w", tid, err)
	}
	if err := r.tr.SetRegset(tid, unix.NT_X86_XSTATE, xstate); err != nil {
		return unix.PtraceRegs{}, err
	}
	if err := r.tr.SetSigmask(tid, core.ThreadCore.GetBlkSigset()); err != nil {
		return unix.PtraceRegs{}, err
	}
	return ptrace.RestartRegs(*regs), nil
}

// queueSignals puts the dumped pending signals back, each from the thread
// it is pending for (the leader for the process's): a thread may queue any
// siginfo to itself, while the kernel refuses a tgkill's or the kernel's
// (si_code SI_TKILL or >= 0) for another thread.
func (r *restorer) queueSignals() error {
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	send := func(tid int, info []byte) error {
		if len(info) != kernel.SiginfoSize {
			return fmt.Errorf("%w: %d-byte siginfo", ErrImage, len(info))
		}
		if err := r.tr.WriteMem(scratch, plainTimerSignal(info)); err != nil {
			return err
		}
		sig := uint64(info[0])
		if tid == 0 {
			return r.sys(unix.SYS_RT_SIGQUEUEINFO, uint64(r.pid), sig, scratch)
		}
		_, err := r.tr.Syscall(tid, unix.SYS_RT_TGSIGQUEUEINFO, uint64(r.pid), uint64(tid), sig, scratch)
		return err
	}
	for _, s := range r.c.cores[uint32(r.pid)].Tc.GetSignalsS().GetSignals() {
		if err := send(0, s.GetSiginfo()); err != nil {
			return fmt.Errorf("queue process signal: %w", err)
		}
	}
	for _, tid := range r.c.threads {
		for _, s := range r.c.cores[tid].ThreadCore.GetSignalsP().GetSignals() {
			if err := send(int(tid), s.GetSiginfo()); err != nil {
				return fmt.Errorf("queue signal of tid %d: %w", tid, err)
			}
		}
	}
	return nil
}
