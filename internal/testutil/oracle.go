package testutil

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// The state oracle: what /proc says of a process before a dump and after
// its restore, compared field by field, so that a restore that loses some
// state (a flag, a mask, a capability, a descriptor's position) fails the
// test that made it even when the test looked elsewhere.

// State is what /proc says of one process: "FILE/FIELD" keys (per thread
// "task/TID/status/SigBlk", per mapping "smaps/START-END/VmFlags", per
// descriptor "fd/N/pos"...) and their values as the kernel writes them.
type State map[string]string

// allowedDiffs are the fields a faithful restore may change, as path.Match
// patterns over State keys, each with its reason.
var allowedDiffs = []string{
	// How much memory is resident, peaked, swapped or in page tables
	// depends on which pages were touched, not on the process's state;
	// the mappings themselves are compared one by one (smaps), and the
	// restore still holds its scratch mapping when the state is read.
	"task/*/status/Vm*", "task/*/status/Rss*", "task/*/status/HugetlbPages",
	// Counters of the task's life, not state.
	"task/*/status/*ctxt_switches",
	// The size of the descriptor table grows with the highest descriptor
	// ever used: a restore may move a descriptor above the process's.
	"task/*/status/FDSize",
	// The pending signals of every process of the same user, against
	// RLIMIT_SIGPENDING: the process's own are SigPnd and ShdPnd.
	"task/*/status/SigQ",
	// PF_SUPERPRIV (0x100): set once the task uses a capability, as the
	// calls a restore injects into it do (PR_SET_MM, setting credentials).
	"task/*/stat/flags/superpriv",
	// PF_FORKNOEXEC (0x40): set by fork, cleared only by execve; a restored
	// process is cloned, never exec'd, as CRIU's are.
	"task/*/stat/flags/forknoexec",
	// A restore makes new pipes, eventfds, epolls and memfds: new inodes.
	// A reopened regular file keeps its inode, which "fd/*/link" shows.
	"fd/*/ino",
	// The id the kernel numbers each eventfd with when it makes it.
	"fd/*/eventfd-id",
	// A timerfd runs on while the process is frozen and while it is
	// restored: its time left shrinks, and it may expire meanwhile. A
	// periodic one that expired unread also shows one expiration and no
	// time left until it is asked for its time, which the dump does: it
	// comes back with every period counted, running. TestRestoreTimerfd
	// compares both with the images.
	"fd/*/ticks", "fd/*/it_value",
	// A pseudo-terminal made anew takes the lowest free number, which
	// may not be the dumped one (the restore logs it); its slave's path
	// is compared without the number (ptsNumber).
	"fd/*/tty-index",
}

// pendingLosses are real losses not fixed yet: the oracle tolerates them
// so that every other field is still compared, and each is named in the
// README's table of what cryo keeps. Not allowed differences: remove one
// as soon as it is fixed.
var pendingLosses = []string{
	// A restore maps every private VMA writable to fill it
	// (writableProt), and the kernel then accounts it (VM_ACCOUNT) for
	// good, so a read-only private mapping that never was writable
	// (code, rodata) gains "ac". CRIU's images do not say which
	// read-only mappings were accounted (RELRO, made read-only after
	// being written, is), so the restore cannot tell which to map
	// read-only. The memory is the same; only the commit charge
	// (Committed_AS) differs.
	"smaps/*/VmFlags/ac",
	// An epoll watch added through a number since closed or reused comes
	// back keyed by the number that holds the file now: CRIU's images
	// name the watched file by that number (tfd) and have no field for
	// the original one. Events and data are kept; TestRestoreEventpoll
	// checks the registrations themselves.
	"fd/*/tfd",
}

// openOnlyFlags are the flags of status flags f that acted when the file
// was opened and that a restore, which opens it again otherwise, loses (a
// pending loss, named in the README): O_NOFOLLOW (the restore opens a
// magic link, which it would refuse) and O_TMPFILE (the file exists).
func openOnlyFlags(f uint64) uint64 {
	lost := uint64(unix.O_NOFOLLOW)
	if f&unix.O_TMPFILE == unix.O_TMPFILE {
		lost |= unix.O_TMPFILE
	}
	return lost
}

// maskSyscalls are the system calls that may run with a signal mask of
// their own, by x86-64 number: in one, /proc shows that mask, and the
// thread's own comes back when the call returns. PTRACE_GETSIGMASK, which
// a dump reads, reports the thread's own; /proc cannot, so the oracle
// leaves the mask of a thread in one out (temporaryMask): a restored
// thread is not back in the call yet when its state is read. arg is the
// argument (from 1) that is the mask, which NULL leaves the thread's; 0
// if there is none to look at (pselect6 has it in a struct).
var maskSyscalls = map[string]struct {
	name string
	arg  int
}{"130": {"rt_sigsuspend", 0}, "270": {"pselect6", 0}, "271": {"ppoll", 4}, "281": {"epoll_pwait", 5}, "441": {"epoll_pwait2", 5}}

// temporaryMask starts the SigBlk of a thread in one of maskSyscalls.
const temporaryMask = "not compared: the mask of "

// RecordState reads what /proc says of process pid, leaving out the
// mappings that lie in skip (start, end pairs: the restore's scratch
// mapping). The process must hold still: stopped, or traced by the caller
// (TracerPid is then the caller before the dump and after the restore
// alike).
func RecordState(t testing.TB, pid int, skip ...uint64) State {
	t.Helper()
	s := State{}
	// A leader that has exited has no memory or files any more: the
	// process's are read through a live thread.
	view, err := proc.View(pid)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(proc.Path(view, name))
		if err != nil {
			t.Fatalf("state oracle: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	link := func(name string) string {
		t.Helper()
		l, err := os.Readlink(proc.Path(view, name))
		if err != nil {
			t.Fatalf("state oracle: %v", err)
		}
		return l
	}
	tids, err := proc.ReadTasks(pid)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	for _, tid := range tids {
		task := fmt.Sprintf("task/%d/", tid)
		if tid == pid && view != pid {
			// An exited leader has only its exit to show.
			st, err := proc.ReadTaskStat(pid, tid)
			if err != nil {
				t.Fatalf("state oracle: %v", err)
			}
			s[task+"exited"] = fmt.Sprintf("%#x", st.ExitCode)
			continue
		}
		lines(read(task+"status"), ":", func(k, v string) { s[task+"status/"+k] = v })
		// The tracer is a thread of the caller's at the dump and at the
		// restore alike, but not the same one.
		if tp := s[task+"status/TracerPid"]; tp != "0" {
			if _, err := os.Stat("/proc/self/task/" + tp); err == nil {
				s[task+"status/TracerPid"] = "this process"
			}
		}
		st, err := proc.ReadTaskStat(pid, tid)
		if err != nil {
			t.Fatalf("state oracle: %v", err)
		}
		// PF_* flags one by one, so that one may be allowed to differ.
		for bit, name := range pfNames {
			s[task+"stat/flags/"+name] = strconv.FormatBool(st.Flags&bit != 0)
		}
		s[task+"stat/flags/other"] = fmt.Sprintf("%#x", st.Flags&^pfKnown)
		s[task+"stat/priority"] = strconv.FormatInt(st.Priority, 10)
		s[task+"stat/nice"] = strconv.FormatInt(st.Nice, 10)
		s[task+"stat/rt_priority"] = strconv.FormatUint(uint64(st.RTPriority), 10)
		s[task+"stat/policy"] = strconv.FormatUint(uint64(st.Policy), 10)
		s[task+"stat/exit_signal"] = strconv.Itoa(st.ExitSignal)
		s[task+"comm"] = read(task + "comm")
		// A kernel without audit support has no login UID to compare.
		if _, err := os.Stat(proc.Path(view, task+"loginuid")); err == nil {
			s[task+"loginuid"] = read(task + "loginuid")
		}
		s[task+"cgroup"] = read(task + "cgroup")
		prio, err := kernel.IoprioGet(tid)
		if err != nil {
			t.Fatalf("state oracle: I/O priority of tid %d: %v", tid, err)
		}
		s[task+"ioprio"] = fmt.Sprintf("%#x", prio)
		// NR ARG1 ... ARG6 SP PC, in hex but NR.
		if f := strings.Fields(read(task + "syscall")); len(f) == 9 {
			if m, ok := maskSyscalls[f[0]]; ok && (m.arg == 0 || f[m.arg] != "0x0") {
				s[task+"status/SigBlk"] = temporaryMask + m.name
			}
		}
	}

	recordPosixTimers(t, s, view, tids)

	smaps, err := proc.ReadSmaps(view)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	for _, m := range mergeMappings(smaps, skip) {
		key := fmt.Sprintf("smaps/%x-%x/", m.start, m.end)
		s[key+"map"] = m.desc
		for f := range m.flags {
			s[key+"VmFlags/"+f] = "set"
		}
	}

	fds, err := proc.ReadFds(view)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	// A restore recreates an unlinked file the process holds (a ghost):
	// a new inode, which the marks on it then name.
	unlinked := map[string]bool{}
	for _, fd := range fds {
		var st unix.Stat_t
		if strings.HasSuffix(link(fmt.Sprintf("fd/%d", fd)), " (deleted)") && unix.Stat(proc.Path(view, fmt.Sprintf("fd/%d", fd)), &st) == nil {
			unlinked[strconv.FormatUint(st.Ino, 16)] = true
		}
	}
	for _, fd := range fds {
		key := fmt.Sprintf("fd/%d/", fd)
		s[key+"link"] = ptsNumber.ReplaceAllString(objectNumber.ReplaceAllString(link(fmt.Sprintf("fd/%d", fd)), "[N]"), "/dev/pts/[N]")
		// Keys repeat (an epoll's tfd lines, a file's lock lines): each
		// value goes into a sorted list under its key.
		multi := map[string][]string{}
		lines(read(fmt.Sprintf("fdinfo/%d", fd)), ":", func(k, v string) { multi[k] = append(multi[k], v) })
		// An epoll's watches name their targets by descriptor, compared
		// as "fd/N/link", and by inode, which is new for a new object.
		for i, v := range multi["tfd"] {
			multi["tfd"][i] = tfdInode.ReplaceAllString(v, "")
		}
		// An end of a pipe whose other end is outside the checkpoint
		// comes back reopened through /proc, which sets O_LARGEFILE for
		// good; the pipes' own tests check their ends' flags. Flags
		// that acted at the open are pending losses (openOnlyFlags).
		pipe := strings.HasPrefix(s[key+"link"], "pipe:")
		for i, v := range multi["flags"] {
			if f, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				if pipe {
					f &^= kernel.OLargefile
				}
				multi["flags"][i] = strconv.FormatUint(f&^openOnlyFlags(f), 8)
			}
		}
		for _, k := range []string{"inotify wd", "fanotify ino"} {
			for i, v := range multi[k] {
				line := k + ":" + v
				if m := markInode.FindStringSubmatch(line); m != nil && unlinked[m[1]] {
					line = strings.Replace(line, m[0], "ino:(unlinked) ", 1)
					multi[k][i] = strings.TrimPrefix(markHandle.ReplaceAllString(line, ""), k+":")
				}
			}
		}
		for k, vs := range multi {
			slices.Sort(vs)
			s[key+k] = strings.Join(vs, " | ")
		}
	}
	var locks []string
	lines(read("../locks"), ":", func(_, v string) {
		// ID: CLASS MODE TYPE PID MAJ:MIN:INODE START END
		if f := strings.Fields(v); len(f) >= 5 && f[4] == strconv.Itoa(pid) {
			locks = append(locks, v)
		}
	})
	slices.Sort(locks)
	s["locks"] = strings.Join(locks, " | ")

	lines(read("limits"), "  ", func(k, v string) { s["limits/"+k] = strings.Join(strings.Fields(v), " ") })
	for _, name := range []string{"oom_score_adj", "personality", "timerslack_ns", "coredump_filter", "cmdline", "environ", "auxv"} {
		s[name] = fmt.Sprintf("%q", read(name))
	}
	s["cwd"], s["root"], s["exe"] = link("cwd"), link("root"), link("exe")
	st, err := proc.ReadStat(pid)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	s["stat/session"], s["stat/pgrp"] = strconv.Itoa(st.Session), strconv.Itoa(st.Pgrp)
	// /proc/PID belongs to root rather than to the process's owner when
	// the process is not dumpable.
	var own unix.Stat_t
	if err := unix.Stat(proc.Path(view, "status"), &own); err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	s["status owner"] = fmt.Sprintf("%d:%d", own.Uid, own.Gid)
	return s
}

// recordPosixTimers records the POSIX timers by id (/proc lists them in
// no set order). A timer runs on while the process is held, by the dump's
// freeze and the restore's last steps alike, so the signal of one that
// signals may be pending at one reading and not at the other: it is left
// out of the pending masks.
func recordPosixTimers(t testing.TB, s State, pid int, tids []int) {
	t.Helper()
	timers, err := proc.ReadPosixTimers(pid)
	if err != nil {
		t.Fatalf("state oracle: %v", err)
	}
	var sigs uint64
	for _, tm := range timers {
		s[fmt.Sprintf("timers/%d", tm.ID)] = fmt.Sprintf("signal %d/%#x notify %s thread %v %d clock %d",
			tm.Signo, tm.Value, tm.Notify, tm.ToThread, tm.NotifyPid, tm.ClockID)
		if tm.Notify != "none" && tm.Signo >= 1 && tm.Signo <= 64 {
			sigs |= 1 << (tm.Signo - 1)
		}
	}
	for _, tid := range tids {
		for _, k := range []string{"SigPnd", "ShdPnd"} {
			key := fmt.Sprintf("task/%d/status/%s", tid, k)
			if v, err := strconv.ParseUint(s[key], 16, 64); err == nil && sigs != 0 {
				s[key] = fmt.Sprintf("%016x", v&^sigs)
			}
		}
	}
}

// mapping is one VMA as the oracle compares it.
type mapping struct {
	start, end uint64
	desc       string // perms, offset and path
	path       string
	offset     uint64
	flags      map[string]bool
}

// mergeMappings lists the mappings outside skip, joining neighbours that
// differ only in VmFlags that may differ (allowedDiffs, pendingLosses):
// the kernel merges VMAs whose flags are equal, so such a flag also moves
// the boundaries between them.
func mergeMappings(smaps []proc.SmapsEntry, skip []uint64) []*mapping {
	var out []*mapping
	for _, e := range smaps {
		if skipped(e.Start, e.End, skip) {
			continue
		}
		m := &mapping{start: e.Start, end: e.End, path: e.Path, offset: e.Offset, flags: map[string]bool{}}
		m.desc = fmt.Sprintf("%s %x %s", e.Perms, e.Offset, e.Path)
		for _, f := range append(strings.Fields(e.Flags.String()), e.OtherFlags...) {
			m.flags[f] = true
		}
		if n := len(out); n > 0 && continues(out[n-1], m, e.Perms) {
			for f := range m.flags {
				out[n-1].flags[f] = true
			}
			out[n-1].end = m.end
			continue
		}
		out = append(out, m)
	}
	return out
}

// continues reports whether m, with permissions perms, extends prev as a
// VMA merge would, but for the flags that may differ.
func continues(prev, m *mapping, perms string) bool {
	if prev.end != m.start || !strings.HasPrefix(prev.desc, perms+" ") || prev.path != m.path ||
		m.path != "" && prev.offset+(prev.end-prev.start) != m.offset {
		return false
	}
	mayDiffer := func(f string) bool {
		k := "smaps/*/VmFlags/" + f
		return matchAny(k, allowedDiffs) || matchAny(k, pendingLosses)
	}
	for f := range prev.flags {
		if !m.flags[f] && !mayDiffer(f) {
			return false
		}
	}
	for f := range m.flags {
		if !prev.flags[f] && !mayDiffer(f) {
			return false
		}
	}
	return true
}

// tfdInode is the target's inode and device in an epoll's tfd line.
var tfdInode = regexp.MustCompile(`\s+ino:[0-9a-f]+\s+sdev:[0-9a-f]+`)

// markInode is the inode of an inotify or fanotify mark line, its key
// included; markHandle its file handle.
var (
	markInode  = regexp.MustCompile(`ino:([0-9a-f]+) `)
	markHandle = regexp.MustCompile(` f_handle:[0-9a-f]+`)
)

// objectNumber is the inode number in a descriptor link to a kernel
// object ("pipe:[1234]"), which a restore makes anew.
var objectNumber = regexp.MustCompile(`\[\d+\]$`)

// ptsNumber is the number of a pseudo-terminal slave in a descriptor
// link ("/dev/pts/3"): see "fd/*/tty-index".
var ptsNumber = regexp.MustCompile(`^/dev/pts/\d+$`)

// The PF_* flags of include/linux/sched.h that a process can show in
// /proc/PID/stat while it runs or is stopped.
var pfNames = map[uint32]string{
	0x2: "idle", 0x4: "exiting", 0x10: "io_worker", 0x20: "wq_worker",
	0x40: "forknoexec", 0x80: "mce_process", 0x100: "superpriv", 0x200: "dumpcore",
	0x400: "signaled", 0x800: "memalloc", 0x1000: "nproc_exceeded", 0x2000: "used_math",
	0x4000: "user_worker", 0x8000: "nofreeze", 0x40000: "kswapd", 0x80000: "memalloc_nofs",
	0x100000: "memalloc_noio", 0x200000: "local_throttle", 0x400000: "kthread", 0x800000: "randomize",
	0x4000000: "no_setaffinity", 0x8000000: "mce_early", 0x10000000: "memalloc_pin",
	0x40000000: "suspend_task",
}

var pfKnown = func() uint32 {
	var m uint32
	for bit := range pfNames {
		m |= bit
	}
	return m
}()

// lines calls fn with the key and the value of each line of text split at
// the first sep, both trimmed; a line without sep is its key, with an
// empty value.
func lines(text, sep string, fn func(k, v string)) {
	for _, l := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(l, sep)
		if k = strings.TrimSpace(k); k != "" {
			fn(k, strings.TrimSpace(v))
		}
	}
}

// skipped reports whether [start, end) lies within one of the ranges.
func skipped(start, end uint64, ranges []uint64) bool {
	for i := 0; i+1 < len(ranges); i += 2 {
		if start >= ranges[i] && end <= ranges[i+1] {
			return true
		}
	}
	return false
}

// CompareStates fails t with every field that differs between before and
// after (a field missing on one side differs), but for allowedDiffs and
// pendingLosses, which it logs.
func CompareStates(t testing.TB, before, after State) {
	t.Helper()
	var excused []string
	drop := func(s State) State {
		out := State{}
		for k, v := range s {
			if matchAny(k, allowedDiffs) {
				continue
			}
			if matchAny(k, pendingLosses) {
				if before[k] != after[k] {
					excused = append(excused, fmt.Sprintf("%s: %q -> %q", k, before[k], after[k]))
				}
				continue
			}
			out[k] = v
		}
		return out
	}
	b, a := drop(before), drop(after)
	for k, v := range b {
		if strings.HasPrefix(v, temporaryMask) {
			delete(b, k)
			delete(a, k)
		}
	}
	dropVDSOProxy(b, a)
	// Only the fields that differ, so that the diff shows each of them.
	for k, v := range b {
		if w, ok := a[k]; ok && w == v {
			delete(a, k)
			delete(b, k)
		}
	}
	slices.Sort(excused)
	excused = slices.Compact(excused)
	if len(excused) > 0 {
		t.Logf("state oracle: known losses being fixed elsewhere (pendingLosses):\n%s", strings.Join(excused, "\n"))
	}
	if d := cmp.Diff(b, a); d != "" {
		t.Errorf("state oracle: /proc differs after the restore (-before +after):\n%s", d)
	}
}

// vdsoNames are the special mappings a vDSO proxy moves.
var vdsoNames = []string{"[vdso]", "[vvar]", "[vvar_vclock]"}

// dropVDSOProxy leaves out of both states the mappings over the ranges of
// [vdso], [vvar] and [vvar_vclock] when those moved: the vDSO proxy moves
// them and leaves at their old addresses a patched copy of the old vDSO
// and a reserved range, a layout the vDSO tests check.
func dropVDSOProxy(before, after State) {
	specials := func(s State) (ranges []string) {
		for k, v := range s {
			r, ok := strings.CutPrefix(k, "smaps/")
			if r, field, _ := strings.Cut(r, "/"); ok && field == "map" && slices.ContainsFunc(vdsoNames, func(n string) bool { return strings.HasSuffix(v, " "+n) }) {
				ranges = append(ranges, r)
			}
		}
		slices.Sort(ranges)
		return ranges
	}
	rb, ra := specials(before), specials(after)
	if slices.Equal(rb, ra) {
		return
	}
	var spans [][2]uint64
	for _, r := range append(rb, ra...) {
		var lo, hi uint64
		fmt.Sscanf(r, "%x-%x", &lo, &hi)
		spans = append(spans, [2]uint64{lo, hi})
	}
	for _, s := range []State{before, after} {
		for k := range s {
			r, ok := strings.CutPrefix(k, "smaps/")
			if !ok {
				continue
			}
			var lo, hi uint64
			fmt.Sscanf(r, "%x-%x", &lo, &hi)
			if slices.ContainsFunc(spans, func(sp [2]uint64) bool { return lo < sp[1] && sp[0] < hi }) {
				delete(s, k)
			}
		}
	}
}

func matchAny(key string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, key); ok {
			return true
		}
	}
	return false
}

// RecordStopped stops the running process pid (SIGSTOP), waits for the
// stop and records its state: how to see a process hold still without
// tracing it, as before `cryo dump`, whose restore brings the process
// back stopped (WaitStopped, then RecordState). The caller resumes it
// (SIGCONT).
func RecordStopped(t testing.TB, pid int) State {
	t.Helper()
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatalf("state oracle: stop pid %d: %v", pid, err)
	}
	WaitStopped(t, pid)
	return RecordState(t, pid)
}

// WaitStopped waits until process pid is stopped by a signal (state T).
func WaitStopped(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(SubjectTimeout)
	for {
		st, err := proc.ReadStat(pid)
		if err == nil && st.State == 'T' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not stopped after %v (state %c, %v)", pid, SubjectTimeout, st.State, err)
		}
		time.Sleep(time.Millisecond)
	}
}
