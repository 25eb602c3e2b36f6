package proc

import (
	"bytes"
	"fmt"
	"strings"
)

// PosixTimer is one POSIX timer (timer_create) as /proc/PID/timers shows
// it; its time left and interval only the process can ask.
type PosixTimer struct {
	ID int32
	// Signo and Value are the signal it sends and its sigev_value.
	Signo int32
	Value uint64
	// Notify is how it notifies: "signal", "none" or "thread"
	// (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD).
	Notify string
	// ToThread is SIGEV_THREAD_ID: the signal goes to thread NotifyPid,
	// otherwise to process NotifyPid.
	ToThread  bool
	NotifyPid int
	// ClockID is the clock as timer_create was given it (a CPU-time
	// clock is negative).
	ClockID int32
}

// ParsePosixTimers parses the contents of /proc/PID/timers: for each
// timer the four lines
//
//	ID: 3
//	signal: 34/0000deadbeefcafe
//	notify: signal/tid.4242
//	ClockID: 1
func ParsePosixTimers(b []byte) ([]PosixTimer, error) {
	var (
		out  []PosixTimer
		cur  PosixTimer
		n    int
		seen = map[int32]bool{}
	)
	keys := []string{"ID", "signal", "notify", "ClockID"}
	err := eachLine(b, func(line []byte) error {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok || string(k) != keys[n%4] {
			return fmt.Errorf("%w: want a %s line", ErrSyntax, keys[n%4])
		}
		var err error
		switch n % 4 {
		case 0:
			cur = PosixTimer{}
			if err = num(&cur.ID, 10)(string(v)); err == nil && cur.ID < 0 {
				err = fmt.Errorf("%w: negative id", ErrSyntax)
			}
			if err == nil && seen[cur.ID] {
				err = fmt.Errorf("%w: timer %d twice", ErrSyntax, cur.ID)
			}
			seen[cur.ID] = true
		case 1:
			sig, val, ok := strings.Cut(string(v), "/")
			if !ok {
				return fmt.Errorf("%w: no signal/value", ErrSyntax)
			}
			if err = num(&cur.Signo, 10)(sig); err == nil {
				err = num(&cur.Value, 16)(val)
			}
		case 2:
			err = parseTimerNotify(string(v), &cur)
		case 3:
			if err = num(&cur.ClockID, 10)(string(v)); err == nil {
				out = append(out, cur)
			}
		}
		n++
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("parse timers: %w", err)
	}
	if n%4 != 0 {
		return nil, fmt.Errorf("parse timers: %w: timer %d cut short", ErrSyntax, cur.ID)
	}
	return out, nil
}

// parseTimerNotify parses "MODE/pid.N" or "signal/tid.N".
func parseTimerNotify(v string, t *PosixTimer) error {
	mode, target, ok := strings.Cut(v, "/")
	kind, pid, ok2 := strings.Cut(target, ".")
	if !ok || !ok2 {
		return fmt.Errorf("%w: notify %q", ErrSyntax, v)
	}
	switch {
	case mode != "signal" && mode != "none" && mode != "thread":
		return fmt.Errorf("%w: notify mode %q", ErrSyntax, mode)
	case kind == "tid" && mode != "signal", kind != "tid" && kind != "pid":
		return fmt.Errorf("%w: notify %q", ErrSyntax, v)
	}
	t.Notify, t.ToThread = mode, kind == "tid"
	return num(&t.NotifyPid, 10)(pid)
}

// ReadPosixTimers reads the POSIX timers of process pid.
func ReadPosixTimers(pid int) ([]PosixTimer, error) {
	b, err := readSmall(Path(pid, "timers"))
	if err != nil {
		return nil, fmt.Errorf("read POSIX timers: %w", err)
	}
	return ParsePosixTimers(b)
}
