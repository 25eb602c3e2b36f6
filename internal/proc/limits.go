package proc

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// RlimInfinity is RLIM_INFINITY, printed as "unlimited".
const RlimInfinity = ^uint64(0)

// Rlimit is one resource limit.
type Rlimit struct{ Soft, Hard uint64 }

// Limits holds the resource limits of a process, indexed by RLIMIT_* number.
type Limits [16]Rlimit

// limitNames are the names and units /proc/PID/limits prints, in RLIMIT_*
// order (fs/proc/base.c, lnames).
var limitNames = [len(Limits{})]struct{ name, unit string }{
	{"Max cpu time", "seconds"},
	{"Max file size", "bytes"},
	{"Max data size", "bytes"},
	{"Max stack size", "bytes"},
	{"Max core file size", "bytes"},
	{"Max resident set", "bytes"},
	{"Max processes", "processes"},
	{"Max open files", "files"},
	{"Max locked memory", "bytes"},
	{"Max address space", "bytes"},
	{"Max file locks", "locks"},
	{"Max pending signals", "signals"},
	{"Max msgqueue size", "bytes"},
	{"Max nice priority", ""},
	{"Max realtime priority", ""},
	{"Max realtime timeout", "us"},
}

var limitsHeader = []string{"Limit", "Soft", "Limit", "Hard", "Limit", "Units"}

// ParseLimits parses the contents of /proc/PID/limits: a header, then one
// line per resource, "name soft hard [unit]". Every resource must appear
// once; an unknown name is an error, since we cannot tell where it ends.
func ParseLimits(b []byte) (Limits, error) {
	var l Limits
	var seen [len(Limits{})]bool
	n := 0
	err := eachLine(b, func(line []byte) error {
		if n++; n == 1 {
			if !slices.Equal(strings.Fields(string(line)), limitsHeader) {
				return fmt.Errorf("%w: not the header", ErrSyntax)
			}
			return nil
		}
		r := -1
		for i, ln := range limitNames {
			if bytes.HasPrefix(line, []byte(ln.name+" ")) {
				r = i
				break
			}
		}
		if r < 0 {
			return fmt.Errorf("%w: unknown resource", ErrSyntax)
		}
		if seen[r] {
			return fmt.Errorf("%w: repeated resource", ErrSyntax)
		}
		seen[r] = true
		f := strings.Fields(string(line[len(limitNames[r].name):]))
		want := []string{limitNames[r].unit}
		if want[0] == "" {
			want = nil
		}
		if len(f) != 2+len(want) || !slices.Equal(f[2:], want) {
			return fmt.Errorf("%w: want soft, hard and unit %v", ErrSyntax, want)
		}
		var err error
		if l[r].Soft, err = parseLimit(f[0]); err != nil {
			return err
		}
		l[r].Hard, err = parseLimit(f[1])
		return err
	})
	for r, ok := range seen {
		if err == nil && !ok {
			err = fmt.Errorf("%w: no %q line", ErrSyntax, limitNames[r].name)
		}
	}
	if err != nil {
		return Limits{}, fmt.Errorf("parse limits: %w", err)
	}
	return l, nil
}

func parseLimit(s string) (uint64, error) {
	if s == "unlimited" {
		return RlimInfinity, nil
	}
	return parseNum[uint64](s, 10)
}

// ReadLimits reads and parses /proc/PID/limits; pid 0 means the calling
// process.
func ReadLimits(pid int) (Limits, error) {
	b, err := readSmall(Path(pid, "limits"))
	if err != nil {
		return Limits{}, fmt.Errorf("read limits: %w", err)
	}
	return ParseLimits(b)
}
