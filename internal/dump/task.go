package dump

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

const sigMax = 64

// dumpTask collects the process-wide state: signal dispositions and the
// shared queue, interval and POSIX timers, limits, personality, flags.
func (d *dumper) dumpTask() (*pb.TaskCoreEntry, error) {
	tr, pid := d.tr, d.view
	scratch, err := tr.Scratch(pid)
	if err != nil {
		return nil, err
	}
	posixTimers, err := d.dumpPosixTimers(scratch)
	if err != nil {
		return nil, err
	}
	// Only the task knows its handlers: ask about each signal it catches
	// or ignores (the others are SIG_DFL), one injected rt_sigaction each.
	var sigactions []*pb.SaEntry
	asked := d.status.SigCgt | d.status.SigIgn
	for sig := 1; sig <= sigMax; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		var act kernel.Sigaction
		if asked&(1<<(sig-1)) != 0 {
			if _, err := tr.Syscall(pid, unix.SYS_RT_SIGACTION, uint64(sig), 0, scratch, 8); err != nil {
				return nil, fmt.Errorf("get action of signal %d: %w", sig, err)
			}
			if err := tr.ReadValue(scratch, &act); err != nil {
				return nil, err
			}
		}
		sigactions = append(sigactions, &pb.SaEntry{
			Sigaction:       act.Handler,
			Flags:           act.Flags,
			Restorer:        act.Restorer,
			Mask:            act.Mask,
			CompatSigaction: pb.Bool(false),
		})
	}

	var itimers [3]*pb.ItimerEntry
	for which := range itimers {
		if _, err := tr.Syscall(pid, unix.SYS_GETITIMER, uint64(which), scratch); err != nil {
			return nil, fmt.Errorf("get interval timer %d: %w", which, err)
		}
		var v kernel.Itimerval
		if err := tr.ReadValue(scratch, &v); err != nil {
			return nil, err
		}
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
	subreaper, err := d.prctlInt(unix.PR_GET_CHILD_SUBREAPER, scratch)
	if err != nil {
		return nil, err
	}
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
		ChildSubreaper: pb.Bool(subreaper != 0),
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

// prctlInt injects a prctl that writes an int to *arg2 and returns it.
func (d *dumper) prctlInt(option int, scratch uint64) (uint32, error) {
	if _, err := d.tr.Syscall(d.view, unix.SYS_PRCTL, uint64(option), scratch); err != nil {
		return 0, fmt.Errorf("prctl %d: %w", option, err)
	}
	var v uint32
	return v, d.tr.ReadValue(scratch, &v)
}

// prctlRet injects a prctl whose answer is its return value.
func (d *dumper) prctlRet(option int) (uint64, error) {
	v, err := d.tr.Syscall(d.view, unix.SYS_PRCTL, uint64(option), 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("prctl %d: %w", option, err)
	}
	return v, nil
}

func readPersonality(pid int) (uint32, error) {
	b, err := os.ReadFile(proc.Path(pid, "personality"))
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
func (d *dumper) dumpCreds() (*pb.CredsEntry, error) {
	secbits, err := d.prctlRet(unix.PR_GET_SECUREBITS)
	if err != nil {
		return nil, err
	}
	s := d.status
	caps := func(c uint64) []uint32 { return []uint32{uint32(c), uint32(c >> 32)} }
	nnp := uint32(0)
	if s.NoNewPrivs {
		nnp = 1
	}
	return &pb.CredsEntry{
		Uid: s.Uid[0], Euid: s.Uid[1], Suid: s.Uid[2], Fsuid: s.Uid[3],
		Gid: s.Gid[0], Egid: s.Gid[1], Sgid: s.Gid[2], Fsgid: s.Gid[3],
		CapInh: caps(s.CapInh), CapPrm: caps(s.CapPrm), CapEff: caps(s.CapEff), CapBnd: caps(s.CapBnd), CapAmb: caps(s.CapAmb),
		Secbits:    uint32(secbits),
		Groups:     s.Groups,
		NoNewPrivs: pb.Uint32(nnp),
	}, nil
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
