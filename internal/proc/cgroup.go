package proc

import (
	"fmt"
	"slices"
	"strings"
)

// Cgroup is one line of /proc/PID/cgroup: the process's cgroup in one
// hierarchy.
type Cgroup struct {
	// Hierarchy is the hierarchy's id; 0 is cgroup v2's.
	Hierarchy int
	// Controllers are the hierarchy's controllers as the kernel lists
	// them ("cpu,cpuacct", "name=systemd"); empty for cgroup v2's.
	Controllers string
	// Path is the cgroup, from the root of the cgroup namespace.
	Path string
}

// ParseCgroup parses the contents of /proc/PID/cgroup.
func ParseCgroup(b []byte) ([]Cgroup, error) {
	var out []Cgroup
	err := eachLine(b, func(line []byte) error {
		id, rest, ok1 := strings.Cut(string(line), ":")
		ctls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(path, "/") {
			return fmt.Errorf("%w: not a cgroup line", ErrSyntax)
		}
		h, err := parseNum[int](id, 10)
		if err != nil {
			return err
		}
		out = append(out, Cgroup{Hierarchy: h, Controllers: ctls, Path: path})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse cgroup: %w", err)
	}
	return out, nil
}

// ReadCgroupFile returns /proc/PID/cgroup as it is, or that of thread tid
// (/proc/PID/task/TID/cgroup) if tid is not 0; pid 0 means the calling
// process.
func ReadCgroupFile(pid, tid int) ([]byte, error) {
	name := "cgroup"
	if tid != 0 {
		name = fmt.Sprintf("task/%d/cgroup", tid)
	}
	b, err := readSmall(Path(pid, name))
	if err != nil {
		return nil, fmt.Errorf("read cgroups: %w", err)
	}
	return b, nil
}

// MountsCgroup reports whether m mounts, from its root, the hierarchy of
// controllers ctls as Cgroup.Controllers names them ("" for cgroup v2's).
func (m Mount) MountsCgroup(ctls string) bool {
	switch {
	case m.Root != "/":
		return false
	case ctls == "":
		return m.FSType == "cgroup2"
	case m.FSType != "cgroup":
		return false
	}
	opts := strings.Split(m.Super, ",")
	for _, c := range strings.Split(ctls, ",") {
		if !slices.Contains(opts, c) {
			return false
		}
	}
	return true
}
