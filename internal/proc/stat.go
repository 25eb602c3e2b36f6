package proc

import (
	"bytes"
	"fmt"
)

// Stat holds the fields of /proc/PID/stat, named as in proc(5). Times are in
// clock ticks, RSS in pages. The mm fields (StartCode ... EnvEnd) read 0 for
// a task without memory, and StartCode, EndCode and StartStack read 1, 1, 0
// when the reader may not ptrace the task.
type Stat struct {
	Pid int
	// Comm is the task's comm as the kernel writes it here: unescaped.
	Comm  string
	State byte

	PPid, Pgrp, Session, TtyNr, TPgid int
	// Flags are the kernel's PF_* flags.
	Flags                            uint32
	MinFlt, CMinFlt, MajFlt, CMajFlt uint64
	UTime, STime                     uint64
	CUTime, CSTime                   int64
	Priority, Nice                   int64
	NumThreads                       int
	ItRealValue                      int64
	// StartTime is the start time after boot.
	StartTime uint64
	// VSize is in bytes.
	VSize                                            uint64
	RSS                                              int64
	RSSLim                                           uint64
	StartCode, EndCode, StartStack, KStkESP, KStkEIP uint64
	// Obsolete signal masks; use Status.
	Signal, Blocked, SigIgnore, SigCatch uint64
	WChan                                uint64
	NSwap, CNSwap                        uint64
	// ExitSignal is sent to the parent at exit; -1 for a thread that is not
	// a group leader.
	ExitSignal, Processor              int
	RTPriority, Policy                 uint32
	DelayAcctBlkIOTicks                uint64
	GuestTime                          uint64
	CGuestTime                         int64
	StartData, EndData, StartBrk       uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd uint64
	ExitCode                           int
}

// ParseStat parses the contents of /proc/PID/stat or /proc/PID/task/TID/stat:
// "pid (comm) state" and 49 numbers. Fields a newer kernel appends are
// ignored, if not empty.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	if err := s.parse(bytes.TrimSuffix(b, []byte{'\n'})); err != nil {
		return Stat{}, fmt.Errorf("parse stat: %w", err)
	}
	return s, nil
}

func (s *Stat) parse(b []byte) error {
	pid, rest, ok := bytes.Cut(b, []byte(" ("))
	if !ok {
		return fmt.Errorf("%w: no comm", ErrSyntax)
	}
	if err := num(&s.Pid, 10)(string(pid)); err != nil {
		return err
	}
	// The comm is not escaped and may hold anything, ')' included, but the
	// fields after it never hold a ')'.
	i := bytes.LastIndexByte(rest, ')')
	if i < 0 {
		return fmt.Errorf("%w: comm not closed", ErrSyntax)
	}
	s.Comm = string(rest[:i])
	rest, ok = bytes.CutPrefix(rest[i+1:], []byte{' '})
	if !ok {
		return fmt.Errorf("%w: no state", ErrSyntax)
	}
	fields := bytes.Split(rest, []byte{' '})
	if len(fields[0]) != 1 {
		return fmt.Errorf("%w: state %q", ErrSyntax, fields[0])
	}
	s.State = fields[0][0]
	parsers := []func(string) error{
		num(&s.PPid, 10), num(&s.Pgrp, 10), num(&s.Session, 10),
		num(&s.TtyNr, 10), num(&s.TPgid, 10), num(&s.Flags, 10),
		num(&s.MinFlt, 10), num(&s.CMinFlt, 10),
		num(&s.MajFlt, 10), num(&s.CMajFlt, 10),
		num(&s.UTime, 10), num(&s.STime, 10),
		num(&s.CUTime, 10), num(&s.CSTime, 10),
		num(&s.Priority, 10), num(&s.Nice, 10), num(&s.NumThreads, 10),
		num(&s.ItRealValue, 10), num(&s.StartTime, 10),
		num(&s.VSize, 10), num(&s.RSS, 10), num(&s.RSSLim, 10),
		num(&s.StartCode, 10), num(&s.EndCode, 10), num(&s.StartStack, 10),
		num(&s.KStkESP, 10), num(&s.KStkEIP, 10),
		num(&s.Signal, 10), num(&s.Blocked, 10),
		num(&s.SigIgnore, 10), num(&s.SigCatch, 10),
		num(&s.WChan, 10), num(&s.NSwap, 10), num(&s.CNSwap, 10),
		num(&s.ExitSignal, 10), num(&s.Processor, 10),
		num(&s.RTPriority, 10), num(&s.Policy, 10),
		num(&s.DelayAcctBlkIOTicks, 10),
		num(&s.GuestTime, 10), num(&s.CGuestTime, 10),
		num(&s.StartData, 10), num(&s.EndData, 10), num(&s.StartBrk, 10),
		num(&s.ArgStart, 10), num(&s.ArgEnd, 10),
		num(&s.EnvStart, 10), num(&s.EnvEnd, 10),
		num(&s.ExitCode, 10),
	}
	if len(fields)-1 < len(parsers) {
		return fmt.Errorf("%w: %d fields after the comm, want %d", ErrSyntax, len(fields), len(parsers)+1)
	}
	for i, parse := range parsers {
		if err := parse(string(fields[i+1])); err != nil {
			return fmt.Errorf("field %d: %w", i+4, err)
		}
	}
	for _, f := range fields[1+len(parsers):] {
		if len(f) == 0 {
			return fmt.Errorf("%w: empty field", ErrSyntax)
		}
	}
	return nil
}

// ReadStat reads and parses /proc/PID/stat; pid 0 means the calling process.
func ReadStat(pid int) (Stat, error) {
	return readStat(Path(pid, "stat"))
}

// ReadTaskStat reads and parses /proc/PID/task/TID/stat, the stat of one
// thread; pid 0 means the calling process.
func ReadTaskStat(pid, tid int) (Stat, error) {
	return readStat(taskPath(pid, tid, "stat"))
}

func readStat(path string) (Stat, error) {
	b, err := readSmall(path)
	if err != nil {
		return Stat{}, fmt.Errorf("read stat: %w", err)
	}
	return ParseStat(b)
}
