package dump

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

const sigMax = 64

// processAnswers are what the process tells of itself through injected
// calls, asked in the batch of its view thread's asks (askProcess).
type processAnswers struct {
	// restoreIDs is whether PR_TIMER_CREATE_RESTORE_IDS is on; EINVAL
	// before Linux 6.17.
	restoreIDs answer
	// sigactions are the actions of the signals it catches or ignores,
	// by signal number less one; the others are SIG_DFL.
	sigactions [sigMax]kernel.Sigaction
	itimers    [3]kernel.Itimerval
	subreaper  uint32
	// membarrier are its membarrier registrations, mdwe its
	// memory-deny-write-execute flags; EINVAL before Linux 6.3.
	membarrier, mdwe            answer
	brk, dumpable, thp, secbits uint64
	// uts are the names of its UTS namespace, asked when it is not cryo's.
	uts unix.Utsname
}

// answer is what an injected call that may fail returned.
type answer struct {
	v   uint64
	err error
}

// askProcess adds to a, a batch of asks to the view thread, what only the
// process can tell of its process-wide state; the answers are read once
// a has run, with the function it returns.
func (d *dumper) askProcess(a *asks) func() (*processAnswers, error) {
	restoreIDs := a.ask("PR_TIMER_CREATE_RESTORE_IDS", true, unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_GET)
	// Only the task knows its handlers: ask about each signal it catches
	// or ignores (the others are SIG_DFL).
	var acts [sigMax]uint64
	asked := d.status.SigCgt | d.status.SigIgn
	for sig := 1; sig <= sigMax; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) || asked&(1<<(sig-1)) == 0 {
			continue
		}
		acts[sig-1] = a.buf(uint64(binary.Size(kernel.Sigaction{})))
		a.ask(fmt.Sprintf("action of signal %d", sig), false, unix.SYS_RT_SIGACTION, uint64(sig), 0, acts[sig-1], 8)
	}
	var itimers [3]uint64
	for which := range itimers {
		itimers[which] = a.buf(uint64(binary.Size(kernel.Itimerval{})))
		a.ask(fmt.Sprintf("interval timer %d", which), false, unix.SYS_GETITIMER, uint64(which), itimers[which])
	}
	subreaper := a.buf(4)
	a.ask("child subreaper flag", false, unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, subreaper)
	// The registrations are the mm's, so any thread may ask.
	membarrier := a.ask("membarrier registrations", true, unix.SYS_MEMBARRIER, membarrierGetRegistrations)
	brk := a.ask("brk", false, unix.SYS_BRK)
	dumpable := a.ask("dumpable flag", false, unix.SYS_PRCTL, unix.PR_GET_DUMPABLE)
	thp := a.ask("THP disable flag", false, unix.SYS_PRCTL, unix.PR_GET_THP_DISABLE)
	secbits := a.ask("securebits", false, unix.SYS_PRCTL, unix.PR_GET_SECUREBITS)
	mdwe := a.ask("memory-deny-write-execute flags", true, unix.SYS_PRCTL, unix.PR_GET_MDWE)
	var uts uint64
	if d.ownUTS {
		uts = a.buf(uint64(binary.Size(unix.Utsname{})))
		a.ask("host and domain names", false, unix.SYS_UNAME, uts)
	}
	return func() (*processAnswers, error) {
		p := &processAnswers{}
		if uts != 0 {
			if err := a.value(uts, &p.uts); err != nil {
				return nil, err
			}
		}
		for i, addr := range acts {
			if addr == 0 {
				continue
			}
			if err := a.value(addr, &p.sigactions[i]); err != nil {
				return nil, err
			}
		}
		for which, addr := range itimers {
			if err := a.value(addr, &p.itimers[which]); err != nil {
				return nil, err
			}
		}
		if err := a.value(subreaper, &p.subreaper); err != nil {
			return nil, err
		}
		p.restoreIDs.v, p.restoreIDs.err = a.ret(restoreIDs)
		p.membarrier.v, p.membarrier.err = a.ret(membarrier)
		p.mdwe.v, p.mdwe.err = a.ret(mdwe)
		for _, r := range []struct {
			i int
			v *uint64
		}{{brk, &p.brk}, {dumpable, &p.dumpable}, {thp, &p.thp}, {secbits, &p.secbits}} {
			var err error
			if *r.v, err = a.ret(r.i); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
}

// dumpTask collects the process-wide state: signal dispositions and the
// shared queue, interval and POSIX timers, limits, personality, flags.
func (d *dumper) dumpTask(p *processAnswers) (*pb.TaskCoreEntry, error) {
	tr, pid := d.tr, d.view
	posixTimers, err := d.dumpPosixTimers(p.restoreIDs)
	if err != nil {
		return nil, err
	}
	var sigactions []*pb.SaEntry
	for sig := 1; sig <= sigMax; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		act := p.sigactions[sig-1]
		sigactions = append(sigactions, &pb.SaEntry{
			Sigaction:       act.Handler,
			Flags:           act.Flags,
			Restorer:        act.Restorer,
			Mask:            act.Mask,
			CompatSigaction: pb.Bool(false),
		})
	}

	var itimers [3]*pb.ItimerEntry
	for which, v := range p.itimers {
		itimers[which] = &pb.ItimerEntry{
			Isec: uint64(v.IntervalSec), Iusec: uint64(v.IntervalUsec),
			Vsec: uint64(v.ValueSec), Vusec: uint64(v.ValueUsec),
		}
	}

	limits, err := proc.ReadLimits(pid)
	if err != nil {
		return nil, err
	}
	rl := &pb.TaskRlimitsEntry{}
	for _, l := range limits {
		rl.Rlimits = append(rl.Rlimits, &pb.RlimitEntry{Cur: l.Soft, Max: l.Hard})
	}
	shared, err := tr.QueuedSignals(pid, true)
	if err != nil {
		return nil, err
	}
	personality, err := readPersonality(pid)
	if err != nil {
		return nil, err
	}
	// The leader's, as its thread core has it.
	blocked := d.threads[0].ThreadCore.GetBlkSigset()
	state := uint32(taskAlive)
	var stopSig *uint32
	if sig := tr.GroupStop(); sig != 0 {
		state, stopSig = taskStopped, pb.Uint32(uint32(sig))
	}
	return &pb.TaskCoreEntry{
		TaskState:      state,
		StopSigno:      stopSig,
		ExitCode:       0,
		Personality:    personality,
		Flags:          d.stat.Flags,
		BlkSigset:      blocked,
		Comm:           d.stat.Comm,
		Timers:         &pb.TaskTimersEntry{Real: itimers[0], Virt: itimers[1], Prof: itimers[2], Posix: posixTimers},
		Rlimits:        rl,
		SignalsS:       signalQueue(shared),
		Sigactions:     sigactions,
		ChildSubreaper: pb.Bool(p.subreaper != 0),
	}, nil
}

// CRIU's task states: running, dead (a zombie), stopped by a signal (job
// control), or a helper (a process made at restore only to make a process
// group whose leader has exited).
const (
	taskAlive   = 1
	taskDead    = 2
	taskStopped = 3
	taskHelper  = 4
)

func readPersonality(pid int) (uint32, error) {
	f, err := proc.Open(proc.Path(pid, "personality"), unix.O_RDONLY)
	if err != nil {
		return 0, fmt.Errorf("read personality: %w", err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("read personality: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("read personality: %w", err)
	}
	return uint32(v), nil
}

// dumpCreds collects the process's credentials.
func (d *dumper) dumpCreds(secbits uint64) *pb.CredsEntry {
	s := d.status
	caps := func(c uint64) []uint32 { return []uint32{uint32(c), uint32(c >> 32)} }
	nnp := uint32(0)
	if s.NoNewPrivs {
		nnp = 1
	}
	cr := &pb.CredsEntry{
		Uid: s.Uid[0], Euid: s.Uid[1], Suid: s.Uid[2], Fsuid: s.Uid[3],
		Gid: s.Gid[0], Egid: s.Gid[1], Sgid: s.Gid[2], Fsgid: s.Gid[3],
		CapInh: caps(s.CapInh), CapPrm: caps(s.CapPrm), CapEff: caps(s.CapEff), CapBnd: caps(s.CapBnd), CapAmb: caps(s.CapAmb),
		Secbits:    uint32(secbits),
		Groups:     s.Groups,
		NoNewPrivs: pb.Uint32(nnp),
	}
	if d.label != "" {
		// For the restore to check it is its own (CRIU sets it again).
		cr.LsmProfile = pb.String(d.label)
	}
	return cr
}

// dumpClocks reads CLOCK_MONOTONIC and CLOCK_BOOTTIME as the target sees
// them (its time namespace may shift them), so a restore can continue
// them.
func dumpClocks(pid int) (*pb.TimensEntry, error) {
	offsets, err := proc.ReadTimensOffsets(pid)
	if err != nil {
		return nil, err
	}
	// cryo's own clocks are shifted by its own namespace's offsets, which
	// the target's, relative to the host, do not include.
	own, err := proc.ReadTimensOffsets(0)
	if err != nil {
		return nil, err
	}
	read := func(clock int32, name string, ownOff, off int64) (*pb.Timespec, error) {
		var ts unix.Timespec
		if err := unix.ClockGettime(clock, &ts); err != nil {
			return nil, fmt.Errorf("read %s clock: %w", name, err)
		}
		ns := ts.Nano() - ownOff + off
		return &pb.Timespec{TvSec: uint64(ns / 1e9), TvNsec: uint64(ns % 1e9)}, nil
	}
	mono, err := read(unix.CLOCK_MONOTONIC, "monotonic", own.Monotonic, offsets.Monotonic)
	if err != nil {
		return nil, err
	}
	boot, err := read(unix.CLOCK_BOOTTIME, "boottime", own.Boottime, offsets.Boottime)
	if err != nil {
		return nil, err
	}
	return &pb.TimensEntry{Monotonic: mono, Boottime: boot}, nil
}
