package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// ReadTasks lists the thread IDs of a process, sorted; pid 0 means the
// calling process. Threads come and go while a process runs: the list is
// only stable once every thread is stopped.
func ReadTasks(pid int) ([]int, error) {
	tids, err := readIDs(Path(pid, "task"))
	if err != nil {
		return nil, fmt.Errorf("read tasks: %w", err)
	}
	return tids, nil
}

// readIDs lists a directory whose entries are all numbers, sorted.
func readIDs(dir string) ([]int, error) {
	f, err := Open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	ids := make([]int, len(names))
	for i, name := range names {
		if ids[i], err = parseNum[int](name, 10); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ReadComm reads /proc/PID/comm, the task's name without escaping; pid 0
// means the calling process.
func ReadComm(pid int) (string, error) {
	b, err := readSmall(Path(pid, "comm"))
	if err != nil {
		return "", fmt.Errorf("read comm: %w", err)
	}
	return string(bytes.TrimSuffix(b, []byte{'\n'})), nil
}

// ReadSecurityLabel reads /proc/PID/attr/current, the task's label of
// the kernel's major security module (AppArmor's profile, SELinux's
// context), without its trailing newline and NULs; pid 0 means the
// calling process. It is "" where no module gives one (EINVAL).
func ReadSecurityLabel(pid int) (string, error) {
	b, err := readSmall(Path(pid, "attr/current"))
	if errors.Is(err, unix.EINVAL) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read security label: %w", err)
	}
	return string(bytes.TrimRight(b, "\n\x00")), nil
}

// ReadCmdline reads the arguments of a process from /proc/PID/cmdline; pid
// 0 means the calling process. It is what the process's memory holds now,
// which the process may have rewritten; a zombie or a kernel thread has
// none.
func ReadCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(Path(pid, "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("read cmdline: %w", err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	var args []string
	for arg := range bytes.SplitSeq(bytes.TrimSuffix(b, []byte{0}), []byte{0}) {
		args = append(args, string(arg))
	}
	return args, nil
}

// ReadExe reads the /proc/PID/exe link, the path of the executable; pid 0
// means the calling process. A deleted file has the kernel's " (deleted)"
// suffix.
func ReadExe(pid int) (string, error) { return readLink(pid, "exe") }

// ReadCwd reads the /proc/PID/cwd link, the working directory; pid 0 means
// the calling process.
func ReadCwd(pid int) (string, error) { return readLink(pid, "cwd") }

// ReadRoot reads the /proc/PID/root link, the root directory; pid 0 means
// the calling process.
func ReadRoot(pid int) (string, error) { return readLink(pid, "root") }

func readLink(pid int, name string) (string, error) {
	s, err := os.Readlink(Path(pid, name))
	if err != nil {
		return "", fmt.Errorf("read %s link: %w", name, err)
	}
	return s, nil
}

// ReadPids lists the processes of cryo's PID namespace, sorted. Processes
// come and go: a later read of one may fail.
func ReadPids() ([]int, error) {
	names, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read pids: %w", err)
	}
	var pids []int
	for _, e := range names {
		if pid, err := parseNum[int](e.Name(), 10); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// ReadTaskChildren reads /proc/PID/task/TID/children: the pids of the
// children of thread tid, separated by spaces.
func ReadTaskChildren(pid, tid int) ([]byte, error) {
	b, err := readSmall(taskPath(pid, tid, "children"))
	if err != nil {
		return nil, fmt.Errorf("read children: %w", err)
	}
	return b, nil
}

// View returns the thread through which /proc shows process pid's memory,
// descriptors, working directory and other process-wide state: pid itself,
// or, when the thread group leader has exited while other threads run on
// (a zombie leader, which has no memory or files any more), the first of
// those, whose /proc/TID directory shows them. A plain zombie is its own
// view.
func View(pid int) (int, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	if st.State != 'Z' {
		return pid, nil
	}
	tids, err := ReadTasks(pid)
	if err != nil {
		return 0, err
	}
	for _, tid := range tids {
		if tid == pid {
			continue
		}
		if ts, err := ReadTaskStat(pid, tid); err == nil && ts.State != 'Z' && ts.State != 'X' {
			return tid, nil
		}
	}
	return pid, nil
}

// LeaderExited reports whether the thread group leader of process pid
// has exited while other threads run on: its view is another thread.
func LeaderExited(pid int) bool {
	v, err := View(pid)
	return err == nil && v != pid
}
