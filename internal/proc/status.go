package proc

import (
	"fmt"
	"strconv"
	"strings"
)

// Status holds the fields of /proc/PID/status that a dump needs.
type Status struct {
	// Name is the task's comm, with the kernel's escaping of '\n' and '\\'
	// undone.
	Name string
	// Umask is -1 when the kernel omits it: a task without an fs_struct,
	// such as a zombie.
	Umask int
	// State is the one-letter state, e.g. 'S' or 'Z'.
	State                      byte
	Tgid, Pid, PPid, TracerPid int
	// Uid and Gid are real, effective, saved and filesystem IDs.
	Uid, Gid [4]uint32
	Groups   []uint32
	// The NS* lists give the ID in each PID namespace, from the one of this
	// /proc inwards; nil on kernels that do not print them.
	NStgid, NSpid, NSpgid, NSsid []int
	// Threads counts the threads of the thread group.
	Threads int
	// SigQueued is the number of queued signals of the task's user and
	// SigQueueLimit its RLIMIT_SIGPENDING.
	SigQueued, SigQueueLimit uint64
	// Signal masks, bit N-1 for signal N: pending for the thread, pending for
	// the whole process (ShdPnd), blocked, ignored, caught.
	SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt uint64
	// Capability sets, bit N for capability N.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	NoNewPrivs                             bool
	// Seccomp is the SECCOMP_MODE_* (0 off, 1 strict, 2 filter); 0 on
	// kernels without seccomp.
	Seccomp int
	// SeccompFilters is how many seccomp filters the thread has (Linux
	// 5.9 and later; 0 before).
	SeccompFilters int
	// VmLck is how much memory the process has locked, in bytes; 0 for a
	// task without memory.
	VmLck uint64
	// UntagMask is the mask the kernel applies to the process's pointers
	// (x86 linear address masking, which arch_prctl enables): all ones
	// without it, and 0 where the kernel omits it.
	UntagMask uint64
	// ThreadFeatures are the x86 features the thread has enabled through
	// arch_prctl (shstk, wrss: the shadow stack); nil where the kernel
	// prints none (without CONFIG_X86_USER_SHADOW_STACK).
	ThreadFeatures []string
}

// ParseStatus parses the contents of /proc/PID/status or
// /proc/PID/task/TID/status.
func ParseStatus(b []byte) (Status, error) {
	s := Status{Umask: -1}
	err := parseFields(b, []field{
		{key: "Name", parse: func(v string) (err error) {
			s.Name, err = unescapeName(v)
			return err
		}},
		{key: "Umask", optional: true, parse: func(v string) error {
			var u uint32
			if err := num(&u, 8)(v); err != nil || u > 0o777 {
				return fmt.Errorf("%w: umask %q", ErrSyntax, v)
			}
			s.Umask = int(u)
			return nil
		}},
		{key: "State", parse: func(v string) error {
			// "S (sleeping)"
			v = strings.Trim(v, " \t")
			if len(v) == 0 || len(v) > 1 && v[1] != ' ' {
				return fmt.Errorf("%w: state %q", ErrSyntax, v)
			}
			s.State = v[0]
			return nil
		}},
		{key: "Tgid", parse: num(&s.Tgid, 10)},
		{key: "Pid", parse: num(&s.Pid, 10)},
		{key: "PPid", parse: num(&s.PPid, 10)},
		{key: "TracerPid", parse: num(&s.TracerPid, 10)},
		{key: "Uid", parse: numArray(s.Uid[:])},
		{key: "Gid", parse: numArray(s.Gid[:])},
		{key: "Groups", parse: numList(&s.Groups)},
		{key: "NStgid", optional: true, parse: numList(&s.NStgid)},
		{key: "NSpid", optional: true, parse: numList(&s.NSpid)},
		{key: "NSpgid", optional: true, parse: numList(&s.NSpgid)},
		{key: "NSsid", optional: true, parse: numList(&s.NSsid)},
		{key: "Threads", parse: num(&s.Threads, 10)},
		{key: "SigQ", parse: func(v string) error {
			// "queued/limit"
			q, l, ok := strings.Cut(strings.Trim(v, " \t"), "/")
			if !ok {
				return fmt.Errorf("%w: SigQ %q", ErrSyntax, v)
			}
			if err := num(&s.SigQueued, 10)(q); err != nil {
				return err
			}
			return num(&s.SigQueueLimit, 10)(l)
		}},
		{key: "SigPnd", parse: num(&s.SigPnd, 16)},
		{key: "ShdPnd", parse: num(&s.ShdPnd, 16)},
		{key: "SigBlk", parse: num(&s.SigBlk, 16)},
		{key: "SigIgn", parse: num(&s.SigIgn, 16)},
		{key: "SigCgt", parse: num(&s.SigCgt, 16)},
		{key: "CapInh", parse: num(&s.CapInh, 16)},
		{key: "CapPrm", parse: num(&s.CapPrm, 16)},
		{key: "CapEff", parse: num(&s.CapEff, 16)},
		{key: "CapBnd", parse: num(&s.CapBnd, 16)},
		{key: "CapAmb", parse: num(&s.CapAmb, 16)},
		{key: "NoNewPrivs", parse: func(v string) error {
			switch strings.Trim(v, " \t") {
			case "0":
			case "1":
				s.NoNewPrivs = true
			default:
				return fmt.Errorf("%w: NoNewPrivs %q", ErrSyntax, v)
			}
			return nil
		}},
		{key: "Seccomp", optional: true, parse: num(&s.Seccomp, 10)},
		{key: "Seccomp_filters", optional: true, parse: num(&s.SeccompFilters, 10)},
		{key: "VmLck", optional: true, parse: kB(&s.VmLck)},
		{key: "untag_mask", optional: true, parse: num(&s.UntagMask, 0)},
		{key: "x86_Thread_features", optional: true, parse: func(v string) error {
			s.ThreadFeatures = strings.Fields(v)
			return nil
		}},
	}, nil)
	if err != nil {
		return Status{}, fmt.Errorf("parse status: %w", err)
	}
	return s, nil
}

// unescapeName undoes the status file's escaping of the comm: the kernel
// writes "\t" and then the name with '\n' as `\n` and '\\' as `\\`, so that
// every name stays on one line. Other bytes, tabs and spaces included, are
// written as they are.
func unescapeName(v string) (string, error) {
	v, ok := strings.CutPrefix(v, "\t")
	if !ok {
		return "", fmt.Errorf("%w: no tab before the name", ErrSyntax)
	}
	if !strings.Contains(v, `\`) {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' {
			if i++; i == len(v) {
				return "", fmt.Errorf("%w: trailing backslash in name", ErrSyntax)
			}
			switch v[i] {
			case 'n':
				c = '\n'
			case '\\':
			default:
				return "", fmt.Errorf("%w: escape \\%c in name", ErrSyntax, v[i])
			}
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// ReadStatus reads and parses /proc/PID/status; pid 0 means the calling
// process.
func ReadStatus(pid int) (Status, error) {
	return readStatus(Path(pid, "status"))
}

// ReadTaskStatus reads and parses /proc/PID/task/TID/status, the status of
// one thread; pid 0 means the calling process.
func ReadTaskStatus(pid, tid int) (Status, error) {
	return readStatus(taskPath(pid, tid, "status"))
}

func readStatus(path string) (Status, error) {
	b, err := readSmall(path)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	return ParseStatus(b)
}

// taskPath names a file under /proc/PID/task/TID.
func taskPath(pid, tid int, name string) string {
	return Path(pid, "task/"+strconv.Itoa(tid)+"/"+name)
}
