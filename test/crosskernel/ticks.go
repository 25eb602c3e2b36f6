package crosskernel

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// tick is one "tick N mono_ns=T pid=P ok" line of a subject.
type tick struct {
	N    int
	Mono int64
	Pid  int
}

// parseTick parses a good tick line; ok is false for anything else,
// including a tick that does not end in "ok".
func parseTick(line string) (t tick, ok bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "tick" || f[4] != "ok" {
		return tick{}, false
	}
	n, err1 := strconv.Atoi(f[1])
	mono, ok2 := strings.CutPrefix(f[2], "mono_ns=")
	pid, ok3 := strings.CutPrefix(f[3], "pid=")
	if err1 != nil || !ok2 || !ok3 {
		return tick{}, false
	}
	m, err2 := strconv.ParseInt(mono, 10, 64)
	p, err3 := strconv.Atoi(pid)
	if err2 != nil || err3 != nil {
		return tick{}, false
	}
	return tick{N: n, Mono: m, Pid: p}, true
}

// outputLines returns the complete lines of a subject's output.
func outputLines(b []byte) []string {
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(string(b[:i]), "\n")
}

// progress summarizes a subject's output.
type progress struct {
	Ticks []tick
	// Bad is the first line that is neither a good tick nor blank: a FAIL
	// line, a Go panic, a crash message.
	Bad string
}

func scanOutput(b []byte) progress {
	var p progress
	for _, l := range outputLines(b) {
		if t, ok := parseTick(l); ok {
			p.Ticks = append(p.Ticks, t)
		} else if strings.TrimSpace(l) != "" && p.Bad == "" {
			p.Bad = l
		}
	}
	return p
}

// checkContinuation checks what a restored process printed after the
// snapshot taken at its dump: good ticks only, numbered on from the last
// one before the dump, all from the dumped PID, with a monotonic clock that
// never goes back, across the restore included. It returns the number of
// new ticks and the monotonic gap across the restore.
func checkContinuation(a *Artifact, snapshot, now []byte) (n int, gap int64, err error) {
	if !bytes.HasPrefix(now, snapshot) {
		return 0, 0, fmt.Errorf("output file %s no longer starts with its content at the dump", a.Out)
	}
	p := scanOutput(now[len(snapshot):])
	if p.Bad != "" {
		return len(p.Ticks), 0, fmt.Errorf("restored process printed %q", p.Bad)
	}
	prevN, prevMono := a.LastTick, a.LastMono
	for i, t := range p.Ticks {
		switch {
		case t.Pid != a.Pid:
			return i, 0, fmt.Errorf("tick %d from pid %d, want %d", t.N, t.Pid, a.Pid)
		case t.N != prevN+1:
			return i, 0, fmt.Errorf("tick %d follows tick %d", t.N, prevN)
		case t.Mono < prevMono:
			return i, 0, fmt.Errorf("monotonic clock went back at tick %d: %d ns after %d ns", t.N, t.Mono, prevMono)
		}
		if i == 0 {
			gap = t.Mono - a.LastMono
		}
		prevN, prevMono = t.N, t.Mono
	}
	return len(p.Ticks), gap, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
