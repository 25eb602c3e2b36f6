package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// rounds is how many times each figure of TestTable is measured; the table
// gives the median (the largest, for peak RSS). This VM hands out memory
// it has not touched lately slowly, at random (a restore of 1 GiB took
// 0.39, 0.39, 1.51 and 0.41 s in four rounds, its pages in the page
// cache): five rounds, so that the median is not such a round.
const rounds = 5

// TestTable prints, as one markdown table, every figure of issue 14 for
// cryo beside CRIU's from the same run when $CRIU names a CRIU binary
// (built from its repository: see the README), else beside the same-run
// baselines of the benchmarks above. It runs only with CRYO_BENCH_TABLE=1,
// which `make bench` sets: it takes minutes.
//
// Times are the wall time of the tool's process, start-up included; a
// dump is followed by `sync` for CRIU, which leaves its images in the page
// cache (cryo syncs its own). The page cache is synced before each dump.
func TestTable(t *testing.T) {
	if os.Getenv("CRYO_BENCH_TABLE") != "1" {
		t.Skip("prints the figures table only with CRYO_BENCH_TABLE=1 (make bench)")
	}
	testutil.RequireRoot(t)
	cryo := testutil.BuildGo(t, "./cmd/cryo")
	tools := []tool{cryoTool(cryo)}
	tab := &table{other: "same-run baseline", base: true}
	if path := os.Getenv("CRIU"); path != "" {
		out, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("CRIU=%s: %v\n%s", path, err, out)
		}
		tools = append(tools, criuTool(path))
		version, _, _ := strings.Cut(string(out), "\n")
		tab.other, tab.base = "CRIU "+strings.TrimPrefix(version, "Version: "), false
	}
	base := tab.base
	mem := testutil.BuildC(t, "mem.c")
	scale := testutil.BuildC(t, "scale.c", "-pthread")
	manyfds := testutil.BuildC(t, "manyfds.c")
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	const fds = 10000
	if rl.Max < fds+fdsSpare {
		t.Fatalf("RLIMIT_NOFILE hard limit %d: no room for %d descriptors", rl.Max, fds)
	}
	for _, mib := range sizes {
		size := map[int]string{16: "16 MiB", 1024: "1 GiB"}[mib]
		dump := tab.row("dump "+size+", images synced", "process_vm_readv + write, synced", seconds)
		restore := tab.row("restore "+size, "read of the pages file into fresh memory", seconds)
		frozen := tab.row("frozen time of a --leave-running dump, "+size, "the dump baseline", millis)
		dump.rss = tab.peakRow("dump " + size)
		restore.rss = tab.peakRow("restore " + size)
		tab.chain(t, tools, dump, restore, 1, lanes{
			start: func(string) *testutil.Subject { return testutil.StartSubject(t, mem, strconv.Itoa(mib)) },
			before: func(i int, tl tool, s *testutil.Subject, dir, _ string) {
				if live := tl.dump(t, s.Pid, filepath.Join(dir, "live"), true); live.err != nil {
					frozen.fail(i, live.err)
				} else {
					frozen.add(i, live.frozen.Seconds())
				}
				if base {
					d := baselineDump(t, s.Pid, filepath.Join(dir, "baseline")).Seconds()
					dump.add(1, d)
					frozen.add(1, d)
				}
			},
			after: func(images string) {
				if pages, _ := filepath.Glob(filepath.Join(images, "pages-*.img")); base && len(pages) > 0 {
					restore.add(1, baselineRestore(t, pages[0]).Seconds())
				}
			},
		})
	}
	for _, sh := range []struct {
		kind, work string
		count      int
	}{{"threads", "1,000 threads", 1000}, {"maps", "30,000 private mappings (60,000 VMAs)", 30000}} {
		dump := tab.row("dump "+sh.work, "what making them took the subject", seconds)
		restore := tab.row("restore "+sh.work, "what making them took the subject", seconds)
		var setup float64
		tab.chain(t, tools, dump, restore, 2, lanes{
			start: func(string) *testutil.Subject {
				s := testutil.StartSubject(t, scale, sh.kind, strconv.Itoa(sh.count))
				ns, err := strconv.ParseInt(s.Ready["setup_ns"], 10, 64)
				if err != nil {
					t.Fatalf("subject's ready line: %v", err)
				}
				setup = time.Duration(ns).Seconds()
				return s
			},
			before: func(int, tool, *testutil.Subject, string, string) {
				if base {
					dump.add(1, setup)
					restore.add(1, setup)
				}
			},
		})
	}
	dump := tab.row("dump 10,000 open files", "reading every fdinfo and link in /proc", seconds)
	restore := tab.row("restore 10,000 open files", "making as many descriptors of the same kinds here", seconds)
	tab.chain(t, tools, dump, restore, 1, lanes{
		start: func(dir string) *testutil.Subject {
			return testutil.StartSubject(t, manyfds, dir, strconv.Itoa(fds), strconv.Itoa(fdsSpare))
		},
		before: func(_ int, _ tool, s *testutil.Subject, _, home string) {
			if base {
				dump.add(1, baselineFdsDump(t, s.Pid).Seconds())
				restore.add(1, baselineFdsRestore(t, home, fds).Seconds())
			}
		},
	})
	fmt.Print(tab)
	for _, r := range tab.rows {
		for i, err := range r.err {
			if err != nil {
				t.Logf("%s, %s: %v", r.work, []string{"cryo", tab.other}[i], err)
			}
		}
	}
}

// lanes says how TestTable's chain starts a subject in a directory of its
// own (home), and what it measures besides each round's dump and restore:
// before the dump (on the running subject, in the round's directory dir),
// and after the restore (with the dump's images).
type lanes struct {
	start  func(home string) *testutil.Subject
	before func(i int, tl tool, s *testutil.Subject, dir, home string)
	after  func(images string)
}

// chain measures rounds dumps and restores with each tool in turn, adding
// them to the rows dump and restore. Each tool has a subject of its own,
// which each round dumps and restores, and which must then tick ticks
// times: a restore brings back the subject of the next round, since this
// VM is slow to hand out memory the first time (a subject touching 1 GiB
// may not start within testutil.SubjectTimeout). A subject whose restore
// failed is replaced.
func (tab *table) chain(t *testing.T, tools []tool, dump, restore *row, ticks int, l lanes) {
	t.Helper()
	subjects := make([]*testutil.Subject, len(tools))
	homes := make([]string, len(tools))
	for range rounds {
		for i, tl := range tools {
			if subjects[i] == nil {
				home, err := filepath.EvalSymlinks(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				subjects[i], homes[i] = l.start(home), home
			}
			s := subjects[i]
			dir := t.TempDir()
			if l.before != nil {
				l.before(i, tl, s, dir, homes[i])
			}
			images := filepath.Join(dir, "images")
			// The other tools' subjects wait, stopped, so that neither
			// tool is measured against the load of the other's (1,000
			// threads waking every 10 ms take a core here).
			others(subjects, i, unix.SIGSTOP)
			ok := tab.dumpRestore(t, i, tl, s, images, dump, restore, ticks)
			others(subjects, i, unix.SIGCONT)
			if !ok {
				subjects[i] = nil
			}
			if l.after != nil {
				l.after(images)
			}
			os.RemoveAll(dir) // up to twice 1 GiB of images
		}
	}
	for _, s := range subjects {
		if s != nil {
			s.Kill()
		}
	}
}

// others sends sig to the subjects but the i-th.
func others(subjects []*testutil.Subject, i int, sig unix.Signal) {
	for j, s := range subjects {
		if j != i && s != nil {
			unix.Kill(s.Pid, sig)
		}
	}
}

// A tool is cryo or CRIU: what the table measures.
type tool struct {
	name    string
	dump    func(t *testing.T, pid int, dir string, leaveRunning bool) shot
	restore func(t *testing.T, dir string) shot
}

// shot is what one dump or restore took: its time, its peak RSS, the time
// the dump kept the target frozen, or why it failed.
type shot struct {
	took, frozen time.Duration
	rss          int64
	err          error
}

func cryoTool(cryo string) tool {
	return tool{
		name: "cryo",
		dump: func(t *testing.T, pid int, dir string, leaveRunning bool) shot {
			args := []string{"dump", "-t", strconv.Itoa(pid), "-D", dir}
			if leaveRunning {
				args = append(args, "--leave-running")
			}
			unix.Sync()
			wall, rss, out, err := tryRun(cryo, args...)
			if err != nil {
				return shot{err: err}
			}
			return shot{took: wall, rss: rss, frozen: logged(t, out, "frozen")}
		},
		restore: func(t *testing.T, dir string) shot {
			wall, rss, _, err := tryRun(cryo, "restore", "-D", dir, "-d")
			return shot{took: wall, rss: rss, err: err}
		},
	}
}

// criuTool runs CRIU with its log in the images' directory. Its frozen
// time is the one CRIU writes in its stats-dump image; its peak RSS is
// the one the kernel reports for its process, which does not count the
// restored processes it forks (it does not reap them).
func criuTool(criu string) tool {
	return tool{
		name: "criu",
		dump: func(t *testing.T, pid int, dir string, leaveRunning bool) shot {
			args := []string{"dump", "-t", strconv.Itoa(pid), "-D", dir, "-o", "dump.log"}
			if leaveRunning {
				args = append(args, "--leave-running")
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			unix.Sync()
			sh := runCriu(criu, dir, "dump.log", args)
			if sh.err != nil {
				return sh
			}
			start := time.Now()
			unix.Sync()
			sh.took += time.Since(start)
			st, err := crit.GetDumpStats(dir)
			if err != nil {
				t.Fatalf("criu's stats-dump in %s: %v", dir, err)
			}
			sh.frozen = time.Duration(st.GetFrozenTime()) * time.Microsecond
			return sh
		},
		restore: func(t *testing.T, dir string) shot {
			return runCriu(criu, dir, "restore.log", []string{"restore", "-D", dir, "-d", "-o", "restore.log"})
		},
	}
}

// runCriu runs CRIU with args and returns its wall time and peak RSS, or
// its error with the end of its log, dir/log.
func runCriu(criu, dir, log string, args []string) shot {
	cmd := exec.Command(criu, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		// The first error of the log says why, but for the one CRIU logs
		// on every run where root lacks CAP_SYS_RESOURCE.
		b, _ := os.ReadFile(filepath.Join(dir, log))
		why := ""
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Error") && !strings.Contains(l, "RLIMIT_NOFILE for self") {
				why = l
				break
			}
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return shot{err: fmt.Errorf("criu %s: %w: %s\n%s%s", args[0], err, why, out, strings.Join(lines[max(0, len(lines)-20):], "\n"))}
	}
	return shot{took: wall, rss: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10}
}

// dumpRestore dumps s with tool i, killing it, restores it and checks
// that it goes on (ticks ticks), adding the times to the rows dump and
// restore and the peak RSS to the table's. It reports whether s runs
// again.
func (tab *table) dumpRestore(t *testing.T, i int, tl tool, s *testutil.Subject, images string, dump, restore *row, ticks int) bool {
	t.Helper()
	d := tl.dump(t, s.Pid, images, false)
	dump.shot(i, d)
	tab.rss("dump", dump, i, d)
	if d.err != nil {
		restore.fail(i, errors.New("no images: the dump failed"))
		s.Kill()
		return false
	}
	s.Wait(t)
	// On a loaded machine, a process of 1,000 threads can take long to go.
	if err := testutil.WaitPidFree(s.Pid); err != nil {
		restore.fail(i, fmt.Errorf("%s dumped %d: %w", tl.name, s.Pid, err))
		return false
	}
	r := tl.restore(t, images)
	restore.shot(i, r)
	tab.rss("restore", restore, i, r)
	if r.err != nil {
		// What a failed restore built is gone; a later one needs the PID.
		if err := testutil.WaitPidFree(s.Pid); err != nil {
			t.Logf("%s failed to restore %d and left it: %v", tl.name, s.Pid, err)
		}
		return false
	}
	s.Restored()
	s.WaitTicks(t, ticks)
	return true
}

// table holds the rows of TestTable: for each, cryo's figures (column 0)
// and the other column's (1), CRIU's or the baseline's.
type table struct {
	other string // the other column's title
	base  bool   // the other column is the baselines'
	rows  []*row
	peak  map[string]*row
}

type row struct {
	work, baseline string
	unit           func(float64) string
	peak           bool // the figure is the largest of the run, not the median
	rss            *row // the peak RSS of the dumps or restores of this row, if shown
	v              [2][]float64
	err            [2]error // the first failure of each column
	fails          [2]int
}

func seconds(v float64) string { return fmt.Sprintf("%.3f s", v) }
func millis(v float64) string  { return fmt.Sprintf("%.0f ms", v*1e3) }
func mebis(v float64) string   { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

func (tab *table) row(work, baseline string, unit func(float64) string) *row {
	r := &row{work: work, baseline: baseline, unit: unit}
	tab.rows = append(tab.rows, r)
	return r
}

// peakRow adds a row of the peak RSS of the tool doing work.
func (tab *table) peakRow(work string) *row {
	r := tab.row("peak RSS of the tool, "+work, "-", mebis)
	r.peak = true
	return r
}

func (r *row) add(i int, v float64) { r.v[i] = append(r.v[i], v) }

// fail records the first failure of column i: the row says it failed.
func (r *row) fail(i int, err error) {
	if r.err[i] == nil {
		r.err[i] = err
	}
	r.fails[i]++
}

func (r *row) shot(i int, sh shot) {
	if sh.err != nil {
		r.fail(i, sh.err)
		return
	}
	r.add(i, sh.took.Seconds())
}

// rss adds the peak RSS of a dump or a restore (op) by tool i, of the row
// r, to r's RSS row if it has one, and to the table's last rows: the
// largest of any dump, of any restore.
func (tab *table) rss(op string, r *row, i int, sh shot) {
	if sh.err != nil {
		return
	}
	if tab.peak == nil {
		tab.peak = map[string]*row{}
	}
	all := tab.peak[op]
	if all == nil {
		all = &row{work: "peak RSS of the tool, largest " + op + " of this table", baseline: "-", unit: mebis, peak: true}
		tab.peak[op] = all
	}
	all.add(i, float64(sh.rss))
	if r.rss != nil {
		r.rss.add(i, float64(sh.rss))
	}
}

// figure is column i's figure, or ok false with why there is none; it
// names the rounds that failed.
func (r *row) figure(i int) (v float64, text string, ok bool) {
	var why string
	if r.err[i] != nil {
		first, _, _ := strings.Cut(r.err[i].Error(), "\n")
		why = "**fails**: " + strings.ReplaceAll(first, "|", `\|`)
	}
	switch {
	case len(r.v[i]) == 0 && why != "":
		return 0, why, false
	case len(r.v[i]) == 0:
		return 0, "-", false
	case r.peak:
		v = slices.Max(r.v[i])
	default:
		s := slices.Sorted(slices.Values(r.v[i]))
		v = s[len(s)/2]
	}
	text = r.unit(v)
	if why != "" {
		text += fmt.Sprintf(" (%d of %d rounds %s)", r.fails[i], r.fails[i]+len(r.v[i]), why)
	}
	return v, text, true
}

func (tab *table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| work | cryo | %s | ratio |", tab.other)
	if tab.base {
		b.WriteString(" baseline |")
	}
	b.WriteString("\n|---|---|---|---|")
	if tab.base {
		b.WriteString("---|")
	}
	for _, r := range append(tab.rows, tab.peak["dump"], tab.peak["restore"]) {
		c, ctext, cok := r.figure(0)
		o, otext, ook := r.figure(1)
		ratio := "-"
		if cok && ook && o > 0 {
			ratio = fmt.Sprintf("%.2fx", c/o)
		}
		fmt.Fprintf(&b, "\n| %s | %s | %s | %s |", r.work, ctext, otext, ratio)
		if tab.base {
			fmt.Fprintf(&b, " %s |", r.baseline)
		}
	}
	fmt.Fprintf(&b, "\n\nWall times of the tool's process, medians of %d rounds; peak RSS the largest of them.\n", rounds)
	return b.String()
}
