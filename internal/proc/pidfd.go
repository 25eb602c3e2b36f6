package proc

import "fmt"

// Pidfd is what a pidfd's fdinfo says of the process it refers to.
type Pidfd struct {
	// Pid is its pid in the pid namespace of /proc: -1 once it has
	// exited and been reaped (a zombie keeps its pid), 0 if it is outside
	// that namespace.
	Pid int
	// NSpid are its pids from that namespace down to its own, as in
	// status; nil on kernels without the line. When Pid is -1 or 0, it
	// is that one number.
	NSpid []int
}

// Pidfd parses the "Pid" and "NSpid" lines of a pidfd's fdinfo.
func (f Fdinfo) Pidfd() (Pidfd, error) {
	var p Pidfd
	v, ok := f.Lookup("Pid")
	if !ok {
		return p, fmt.Errorf("%w: no Pid line", ErrSyntax)
	}
	var err error
	if p.Pid, err = parseNum[int](v, 10); err != nil {
		return p, fmt.Errorf("Pid: %w", err)
	}
	if p.Pid < -1 {
		return p, fmt.Errorf("%w: Pid %d", ErrSyntax, p.Pid)
	}
	if v, ok := f.Lookup("NSpid"); ok {
		if p.NSpid, err = nums[int](v); err != nil {
			return p, fmt.Errorf("NSpid: %w", err)
		}
		if len(p.NSpid) == 0 || p.NSpid[0] != p.Pid {
			return p, fmt.Errorf("%w: NSpid %q for Pid %d", ErrSyntax, v, p.Pid)
		}
	}
	return p, nil
}
