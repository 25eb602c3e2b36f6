package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// restoreTask sets the process-wide state: signal actions, interval
// timers, limits and personality.
func (r *restorer) restoreTask() error {
	tc := r.c.cores[uint32(r.pid)].Tc
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	// A new process has every action SIG_DFL, but for the signals cryo
	// ignores (under nohup, say): its stub kept them ignored across its
	// exec, and the process inherited them.
	st, err := proc.ReadStatus(r.pid)
	if err != nil {
		return err
	}
	// The entries are for signals 1 to 64 without SIGKILL and SIGSTOP.
	sig := 0
	for _, sa := range tc.Sigactions {
		sig++
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			sig++
		}
		if sa.GetSigaction() == 0 && sa.GetFlags() == 0 && sa.GetMask() == 0 && st.SigIgn&(1<<(sig-1)) == 0 {
			continue // SIG_DFL already
		}
		if err := r.tr.WriteValue(scratch, kernel.Sigaction{Handler: sa.GetSigaction(), Flags: sa.GetFlags(), Restorer: sa.GetRestorer(), Mask: sa.GetMask()}); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_RT_SIGACTION, uint64(sig), scratch, 0, 8); err != nil {
			return fmt.Errorf("set action of signal %d: %w", sig, err)
		}
	}
	if t := tc.GetTimers(); t != nil {
		for which, it := range []interface {
			GetIsec() uint64
			GetIusec() uint64
			GetVsec() uint64
			GetVusec() uint64
		}{t.GetReal(), t.GetVirt(), t.GetProf()} {
			if it.GetVsec() == 0 && it.GetVusec() == 0 {
				continue // disarmed
			}
			v := kernel.Itimerval{IntervalSec: int64(it.GetIsec()), IntervalUsec: int64(it.GetIusec()), ValueSec: int64(it.GetVsec()), ValueUsec: int64(it.GetVusec())}
			if err := r.tr.WriteValue(scratch, v); err != nil {
				return err
			}
			if err := r.sys(unix.SYS_SETITIMER, uint64(which), scratch, 0); err != nil {
				return fmt.Errorf("set interval timer %d: %w", which, err)
			}
		}
	}
	if err := r.restoreLimits(tc, scratch); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_PERSONALITY, uint64(tc.GetPersonality())); err != nil {
		return fmt.Errorf("set personality %#x: %w", tc.GetPersonality(), err)
	}
	if tc.GetChildSubreaper() {
		if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set child subreaper: %w", err)
		}
	}
	return r.restoreProcState(tc)
}

// defaultTimerSlack is the kernel's timer slack (50 µs), the only one a
// dump keeps.
const defaultTimerSlack = 50000

// CRIU's task states: running, dead (a zombie), stopped by a signal (job
// control), or a helper (made only to make a process group whose leader
// has exited).
const (
	taskAlive   = 1
	taskDead    = 2
	taskStopped = 3
	taskHelper  = 4
)

// stopIfStopped queues the signal that stopped a process dumped stopped
// (tc.stop_signo), while its threads are still held: they take it before
// running any of their code and the process is stopped as it was, until
// a SIGCONT, its parent told of the same stop signal. It returns the
// signal, 0 for a process not stopped. SIGTSTP, SIGTTIN and SIGTTOU stop
// only a process that has no action for them, and the kernel discards
// them in an orphaned process group: when the process has an action, or
// no process of the tree shows its group is not orphaned (stopSignal),
// SIGSTOP stops it, which can be neither caught nor discarded, and the
// log says so.
func (r *restorer) stopIfStopped() (unix.Signal, error) {
	tc := r.c.cores[uint32(r.pid)].Tc
	if tc.GetTaskState() != taskStopped {
		return 0, nil
	}
	sig := r.stopSignal(unix.Signal(tc.GetStopSigno()))
	r.log.Info("the process was stopped: it stays stopped", "signal", tc.GetStopSigno(), "stopped with", int(sig))
	if err := unix.Kill(r.pid, sig); err != nil {
		return 0, fmt.Errorf("stop the process with signal %d: %w", sig, err)
	}
	return sig, nil
}

// waitStopped waits, once the process runs, until a stop signal other
// than SIGSTOP has stopped it: the restore returns with it stopped, before
// anything (cryo exiting) may orphan its group, which would have the
// signal discarded.
func (r *restorer) waitStopped(sig unix.Signal) error {
	if sig == 0 || sig == unix.SIGSTOP {
		return nil
	}
	deadline := time.Now().Add(time.Second)
	for {
		st, err := proc.ReadStat(r.pid)
		if err != nil {
			return err
		}
		if st.State == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("signal %d did not stop the process within a second", sig)
		}
		time.Sleep(time.Millisecond)
	}
}

// stopSignal is the signal that stops the process as sig had: sig itself
// if it is SIGTSTP, SIGTTIN or SIGTTOU, the process's action for it is the
// default one, and its process group is not orphaned: a process in the
// group has its parent in another group of the same session. Else
// SIGSTOP.
func (r *restorer) stopSignal(sig unix.Signal) unix.Signal {
	if sig != unix.SIGTSTP && sig != unix.SIGTTIN && sig != unix.SIGTTOU {
		return unix.SIGSTOP
	}
	// The actions are for signals 1 to 64 without SIGKILL and SIGSTOP,
	// which come before these.
	acts := r.c.cores[uint32(r.pid)].Tc.Sigactions
	if i := int(sig) - 3; i >= len(acts) || acts[i].GetSigaction() != 0 {
		return unix.SIGSTOP
	}
	own, err := proc.ReadStat(r.pid)
	if err != nil {
		return unix.SIGSTOP
	}
	// The processes of the tree first; the group may have others.
	var pids []int
	for _, o := range r.procs {
		pids = append(pids, o.pid)
	}
	if all, err := proc.ReadPids(); err == nil {
		pids = append(pids, all...)
	}
	for _, pid := range pids {
		m, err := proc.ReadStat(pid)
		if err != nil || m.Pgrp != own.Pgrp {
			continue
		}
		if p, err := proc.ReadStat(m.PPid); err == nil && p.Pgrp != own.Pgrp && p.Session == m.Session {
			return sig
		}
	}
	return unix.SIGSTOP
}

// restoreLimits sets the resource limits. A hard limit above this one's
// needs CAP_SYS_RESOURCE; without it the limit is kept as high as allowed,
// and the log says so.
func (r *restorer) restoreLimits(tc *pb.TaskCoreEntry, scratch uint64) error {
	cur, err := proc.ReadLimits(r.pid)
	if err != nil {
		return err
	}
	for res, l := range tc.GetRlimits().GetRlimits() {
		if res >= len(cur) {
			break
		}
		soft, hard := l.GetCur(), l.GetMax()
		if soft == cur[res].Soft && hard == cur[res].Hard {
			continue
		}
		if err := r.tr.WriteValue(scratch, unix.Rlimit{Cur: soft, Max: hard}); err != nil {
			return err
		}
		err := r.sys(unix.SYS_PRLIMIT64, 0, uint64(res), scratch, 0)
		// r.sys wraps the errno.
		if errors.Is(err, unix.EPERM) && hard > cur[res].Hard {
			r.log.Warn("cannot raise a hard limit without CAP_SYS_RESOURCE; keeping this one's", "resource", res, "dumped", hard, "kept", cur[res].Hard)
			if err = r.tr.WriteValue(scratch, unix.Rlimit{Cur: min(soft, cur[res].Hard), Max: cur[res].Hard}); err == nil {
				err = r.sys(unix.SYS_PRLIMIT64, 0, uint64(res), scratch, 0)
			}
		}
		if err != nil {
			return fmt.Errorf("set limit %d to %d/%d: %w", res, soft, hard, err)
		}
	}
	return nil
}

// restoreCreds sets the credentials, last since they take away the right
// to do the rest. The kernel keeps credentials per thread and a system
// call changes its caller's only, so every thread gets its own; the
// dumpable flag, which a change of uid resets, comes after them.
func (r *restorer) restoreCreds() error {
	// The stub's securebits are cryo's.
	secbits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("read own securebits: %w", err)
	}
	// The threads have the credentials they were cloned with from the
	// leader, unless seccomp filters were installed since, which may
	// set no_new_privs: read once, before the leader's change.
	var born *proc.Status
	if len(r.c.seccomp) == 0 {
		st, err := proc.ReadTaskStatus(r.pid, r.pid)
		if err != nil {
			return err
		}
		born = &st
	}
	for _, tid := range r.c.threads {
		if err := r.restoreThreadCreds(int(tid), r.c.cores[tid].ThreadCore.GetCreds(), uint32(secbits), born); err != nil {
			return fmt.Errorf("tid %d: %w", tid, err)
		}
		// After the credentials, whose change clears it.
		if err := r.restorePdeath(int(tid), r.c.cores[tid].ThreadCore.GetPdeathSig()); err != nil {
			return fmt.Errorf("tid %d: %w", tid, err)
		}
	}
	// PR_SET_DUMPABLE takes 0 or 1; 2 (root may dump) is not settable, and
	// 0 is the safe side of it. An image without the field (CRIU's may
	// lack it) leaves the kernel's.
	if r.c.mm.Dumpable == nil {
		return nil
	}
	dumpable := uint64(0)
	if r.c.mm.GetDumpable() == 1 {
		dumpable = 1
	}
	if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, dumpable, 0, 0, 0); err != nil {
		return fmt.Errorf("set dumpable %d: %w", dumpable, err)
	}
	return nil
}

// restorePdeath sets the parent-death signal of thread tid. The root's
// parent is cryo now, not the one the signal was about: with -d the root
// would get it as soon as cryo exits, so it is left unset, and said.
func (r *restorer) restorePdeath(tid int, sig uint32) error {
	switch {
	case sig == 0:
		return nil
	case r.pid == r.rootPid:
		r.log.Warn("the root's parent-death signal is not restored: its parent is not in the checkpoint", "tid", tid, "signal", sig)
		return nil
	}
	if _, err := r.tr.Syscall(tid, unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(sig), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal %d: %w", sig, err)
	}
	return nil
}

// capBits turns an image's capability set (32-bit words, low first) into
// bits.
func capBits(c []uint32) uint64 {
	var v uint64
	for i, w := range c[:min(len(c), 2)] {
		v |= uint64(w) << (32 * i)
	}
	return v
}

// secureNoSetuidFixup is SECURE_NO_SETUID_FIXUP
// (include/uapi/linux/securebits.h), which x/sys lacks.
const secureNoSetuidFixup = 2

// restoreThreadCreds gives thread tid the credentials cr, in the order
// that keeps the right to set each: groups and ids while it still has
// cryo's capabilities (kept across the change of uid by
// SECURE_NO_SETUID_FIXUP), then securebits and the bounding set, which
// need CAP_SETPCAP, then the capabilities themselves, the ambient ones
// (which must be permitted and inheritable) and no_new_privs. Nothing is
// set if the thread has cr already: born, when known, or as read.
func (r *restorer) restoreThreadCreds(tid int, cr *pb.CredsEntry, ownSecbits uint32, born *proc.Status) error {
	if cr == nil {
		return nil
	}
	if born == nil {
		st, err := proc.ReadTaskStatus(r.pid, tid)
		if err != nil {
			return err
		}
		born = &st
	}
	st := *born
	inh, prm, eff, bnd, amb := capBits(cr.CapInh), capBits(cr.CapPrm), capBits(cr.CapEff), capBits(cr.CapBnd), capBits(cr.CapAmb)
	same := st.Uid == [4]uint32{cr.GetUid(), cr.GetEuid(), cr.GetSuid(), cr.GetFsuid()} &&
		st.Gid == [4]uint32{cr.GetGid(), cr.GetEgid(), cr.GetSgid(), cr.GetFsgid()} &&
		slices.Equal(st.Groups, cr.Groups) &&
		st.CapInh == inh && st.CapPrm == prm && st.CapEff == eff && st.CapBnd == bnd && st.CapAmb == amb &&
		st.NoNewPrivs == (cr.GetNoNewPrivs() != 0) && cr.GetSecbits() == ownSecbits
	if same {
		return nil
	}
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	sys := func(what string, nr int, args ...uint64) error {
		if _, err := r.tr.Syscall(tid, nr, args...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := r.tr.WriteMem(scratch, kernel.Encode(cr.Groups)); err != nil {
		return err
	}
	if err := sys("set groups", unix.SYS_SETGROUPS, uint64(len(cr.Groups)), scratch); err != nil {
		return err
	}
	if err := sys("keep capabilities", unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, 1<<secureNoSetuidFixup, 0, 0, 0); err != nil {
		return err
	}
	// setfsuid and setfsgid answer the old id, never an error.
	if err := sys("set gids", unix.SYS_SETRESGID, uint64(cr.GetGid()), uint64(cr.GetEgid()), uint64(cr.GetSgid())); err != nil {
		return err
	}
	if err := sys("set fsgid", unix.SYS_SETFSGID, uint64(cr.GetFsgid())); err != nil {
		return err
	}
	if err := sys("set uids", unix.SYS_SETRESUID, uint64(cr.GetUid()), uint64(cr.GetEuid()), uint64(cr.GetSuid())); err != nil {
		return err
	}
	if err := sys("set fsuid", unix.SYS_SETFSUID, uint64(cr.GetFsuid())); err != nil {
		return err
	}
	if err := sys("set securebits", unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, uint64(cr.GetSecbits()), 0, 0, 0); err != nil {
		return err
	}
	last, err := capLast()
	if err != nil {
		return err
	}
	for c := range last + 1 {
		if bnd&(1<<c) == 0 && st.CapBnd&(1<<c) != 0 {
			if err := sys(fmt.Sprintf("drop capability %d from the bounding set", c), unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uint64(c), 0, 0, 0); err != nil {
				return err
			}
		}
	}
	// The header, then the low and the high words of each set.
	caps := struct {
		Hdr  unix.CapUserHeader
		Data [2]unix.CapUserData
	}{
		unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3},
		[2]unix.CapUserData{{Effective: uint32(eff), Permitted: uint32(prm), Inheritable: uint32(inh)},
			{Effective: uint32(eff >> 32), Permitted: uint32(prm >> 32), Inheritable: uint32(inh >> 32)}},
	}
	if err := r.tr.WriteValue(scratch, caps); err != nil {
		return err
	}
	if err := sys("set capabilities", unix.SYS_CAPSET, scratch, scratch+uint64(binary.Size(caps.Hdr))); err != nil {
		return err
	}
	for c := range last + 1 {
		if amb&(1<<c) != 0 {
			if err := sys(fmt.Sprintf("raise ambient capability %d", c), unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uint64(c), 0, 0); err != nil {
				return err
			}
		}
	}
	if cr.GetNoNewPrivs() != 0 {
		if err := sys("set no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// capLast is the highest capability this kernel knows.
func capLast() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the highest capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("read the highest capability: %q", b)
	}
	return n, nil
}

// open opens a file in the process and returns the descriptor.
func (r *restorer) open(path string, flags, mode uint64) (uint64, error) {
	return r.tr.OpenAt(r.pid, path, flags, mode)
}

// sys injects a system call into the restored process's leader when only
// its success matters.
func (r *restorer) sys(nr int, args ...uint64) error {
	_, err := r.tr.Syscall(r.pid, nr, args...)
	return err
}

// syscalls injects calls into thread tid in batches (see
// ptrace.Syscalls); what(i) names what the call that failed was for.
func (r *restorer) syscalls(tid int, calls []ptrace.Sys, what func(i int) string) error {
	err := r.tr.Syscalls(tid, calls)
	var se *ptrace.SyscallError
	if what != nil && errors.As(err, &se) {
		return fmt.Errorf("%s: %w", what(se.Index), se.Err)
	}
	return err
}

// scratchSize is how much of the scratch area the restore may use.
const scratchSize = ptrace.ScratchSize

// scratch returns the restored process's scratch buffer.
func (r *restorer) scratch() (uint64, error) { return r.tr.Scratch(r.pid) }

// scratchRange is where the scratch mapping is; the stub was given one
// outside every dumped VMA, and its child has the same.
func (r *restorer) scratchRange() vdso.Range {
	start, end, _ := r.tr.ScratchRange(r.pid)
	return vdso.Range{Start: start, End: end}
}
