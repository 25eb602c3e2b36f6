// Package bench measures cryo's dump and restore against what the machine
// itself can do in the same run: reading a process's memory with
// process_vm_readv and writing it to a file (dump), reading the pages file
// and filling fresh memory (restore), reading and making descriptors
// (BenchmarkFds), making threads and mappings (BenchmarkScale), and a
// vDSO call without the proxy.
// Machines here are noisy: the ratios are what travels.
//
//	go test -run '^$' -bench . -benchtime 3x ./test/bench
package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

var sizes = []int{16, 1024} // MiB

var rssRe = regexp.MustCompile(`peak-rss-kib=([0-9]+)`)

// run runs cryo and returns its wall time, peak RSS (which cryo logs at
// -v 2) and output.
func run(b testing.TB, cryo string, args ...string) (time.Duration, int64, string) {
	b.Helper()
	wall, rss, out, err := tryRun(cryo, args...)
	if err != nil {
		b.Fatal(err)
	}
	return wall, rss, out
}

// tryRun is run for a caller that goes on when cryo fails.
func tryRun(cryo string, args ...string) (time.Duration, int64, string, error) {
	cmd := exec.Command(cryo, append(args, "-v", "2")...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return wall, 0, string(out), fmt.Errorf("cryo %v: %w\n%s", args, err, out)
	}
	m := rssRe.FindSubmatch(out)
	if m == nil {
		return wall, 0, string(out), fmt.Errorf("cryo %v logged no peak RSS:\n%s", args, out)
	}
	kib, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return wall, kib << 10, string(out), nil
}

// logged reads a duration cryo logs as key=DURATION at -v 2 in its last
// line, the summary (each step logs a took= of its own before): its own
// measure, without the start-up of the cryo process.
func logged(b testing.TB, out, key string) time.Duration {
	b.Helper()
	ms := regexp.MustCompile(` `+key+`=([0-9.]+(?:ns|µs|ms|s))`).FindAllStringSubmatch(out, -1)
	if ms == nil {
		b.Fatalf("cryo logged no %s in %q", key, out)
	}
	d, err := time.ParseDuration(ms[len(ms)-1][1])
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// stepTook reads the took= that cryo logs at -v 2 for one step.
func stepTook(b testing.TB, out, step string) time.Duration {
	b.Helper()
	m := regexp.MustCompile(` step=` + step + ` took=([0-9.]+(?:ns|µs|ms|s))`).FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("cryo logged no time for step %s in %q", step, out)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func BenchmarkDump(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	mem := testutil.BuildC(b, "mem.c")
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			s := testutil.StartSubject(b, mem, strconv.Itoa(mib))
			dir := b.TempDir()
			// This VM's memory is slow the first time the page cache takes
			// it (the host hands it over lazily): one untimed round warms
			// it for both the dump and the baseline.
			warm := filepath.Join(dir, "warm")
			run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", warm, "--leave-running")
			os.RemoveAll(warm)
			baselineDump(b, s.Pid, filepath.Join(dir, "baseline"))
			var wall, took, frozen, base time.Duration
			var rss, size int64
			for i := 0; b.Loop(); i++ {
				images := filepath.Join(dir, fmt.Sprint("img", i))
				w, r, out := run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images, "--leave-running")
				wall += w
				took += logged(b, out, "total")
				rss = max(rss, r)
				frozen += logged(b, out, "frozen")
				size = dirSize(b, images)
				os.RemoveAll(images)
				base += baselineDump(b, s.Pid, filepath.Join(dir, "baseline"))
			}
			n := time.Duration(b.N)
			report(b, float64(size), wall/n, took/n, base/n)
			b.ReportMetric(float64(frozen/n)/1e6, "frozen-ms")
			b.ReportMetric(float64(rss)/(1<<20), "cryo-MiB")
			b.ReportMetric(float64(size)/(1<<20), "image-MiB")
		})
	}
}

// BenchmarkFrozen measures how long a --leave-running dump holds its
// target frozen when it reads the private memory from a snapshot child
// (the default) and, as the same-run baseline, when it reads it all
// frozen (--no-snapshot); and each whole dump's time.
func BenchmarkFrozen(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	mem := testutil.BuildC(b, "mem.c")
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			s := testutil.StartSubject(b, mem, strconv.Itoa(mib))
			dir := b.TempDir()
			dump := func(name string, flags ...string) (frozen, took time.Duration) {
				images := filepath.Join(dir, name)
				defer os.RemoveAll(images)
				_, _, out := run(b, cryo, append([]string{"dump", "-t", strconv.Itoa(s.Pid), "-D", images, "--leave-running"}, flags...)...)
				return logged(b, out, "frozen"), logged(b, out, "total")
			}
			dump("warm")
			var frozen, took, base, baseTook time.Duration
			for i := 0; b.Loop(); i++ {
				f, t := dump(fmt.Sprint("snap", i))
				frozen, took = frozen+f, took+t
				f, t = dump(fmt.Sprint("frozen", i), "--no-snapshot")
				base, baseTook = base+f, baseTook+t
			}
			n := time.Duration(b.N)
			b.ReportMetric(float64(frozen/n)/1e6, "frozen-ms")
			b.ReportMetric(float64(base/n)/1e6, "frozen-nosnapshot-ms")
			b.ReportMetric(frozen.Seconds()/base.Seconds(), "x-nosnapshot")
			b.ReportMetric(float64(took/n)/1e6, "dump-ms")
			b.ReportMetric(float64(baseTook/n)/1e6, "dump-nosnapshot-ms")
		})
	}
}

// report gives the time as cryo measured it and with its process's
// start-up (wall), the throughput, and the ratio of cryo's time to the
// baseline's.
func report(b *testing.B, bytes float64, wall, took, base time.Duration) {
	b.ReportMetric(float64(wall)/1e6, "wall-ms")
	b.ReportMetric(float64(took)/1e6, "ms")
	b.ReportMetric(bytes/(1<<30)/took.Seconds(), "GiB/s")
	b.ReportMetric(float64(base)/1e6, "baseline-ms")
	b.ReportMetric(took.Seconds()/base.Seconds(), "x-baseline")
}

// baselineDump reads the present pages of pid's anonymous memory with
// process_vm_readv in 4 MiB chunks and writes them to a file, synced: the
// same-run baseline of a dump, the copy any dump must make.
func baselineDump(b testing.TB, pid int, path string) time.Duration {
	b.Helper()
	start := time.Now()
	smaps, err := proc.ReadSmaps(pid)
	if err != nil {
		b.Fatal(err)
	}
	pm, err := os.Open(proc.Path(pid, "pagemap"))
	if err != nil {
		b.Fatal(err)
	}
	defer pm.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	buf := make([]byte, 4<<20)
	for _, m := range smaps {
		if m.Anonymous == 0 || m.Perms[0] != 'r' {
			continue
		}
		runs, err := proc.NewPagemapReader(pm, []proc.PageRange{{Start: m.Start, End: m.End}}).Runs(m.Start, m.End, proc.PresentOrSwapped)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range runs {
			for addr, end := r.Addr, r.Addr+r.Pages*4096; addr < end; {
				n := min(uint64(len(buf)), end-addr)
				local := []unix.Iovec{{Base: &buf[0]}}
				local[0].SetLen(int(n))
				if _, err := unix.ProcessVMReadv(pid, local, []unix.RemoteIovec{{Base: uintptr(addr), Len: int(n)}}, 0); err != nil {
					b.Fatal(err)
				}
				if _, err := f.Write(buf[:n]); err != nil {
					b.Fatal(err)
				}
				addr += n
			}
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return time.Since(start)
}

func dirSize(b testing.TB, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func BenchmarkRestore(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	mem := testutil.BuildC(b, "mem.c")
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			s := testutil.StartSubject(b, mem, strconv.Itoa(mib))
			images := filepath.Join(b.TempDir(), "images")
			run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
			s.ReapDumped(b)
			pages, _ := filepath.Glob(filepath.Join(images, "pages-*.img"))
			size := dirSize(b, images)
			// One untimed round warms this VM's memory (see BenchmarkDump).
			run(b, cryo, "restore", "-D", images, "-d")
			s.Restored()
			s.WaitTicks(b, 1)
			s.Kill()
			s.ReapDumped(b)
			baselineRestore(b, pages[0])
			var wall, took, base time.Duration
			var rss int64
			for b.Loop() {
				w, r, out := run(b, cryo, "restore", "-D", images, "-d")
				s.Restored()
				s.WaitTicks(b, 1)
				wall += w
				took += logged(b, out, "took")
				rss = max(rss, r)
				s.Kill()
				s.ReapDumped(b)
				base += baselineRestore(b, pages[0])
			}
			n := time.Duration(b.N)
			report(b, float64(size), wall/n, took/n, base/n)
			b.ReportMetric(float64(rss)/(1<<20), "cryo-MiB")
		})
	}
}

// baselineRestore reads a pages file into fresh anonymous memory: the
// same-run baseline of a restore, the copy any restore must make.
func baselineRestore(b testing.TB, pages string) time.Duration {
	b.Helper()
	start := time.Now()
	f, err := os.Open(pages)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	mem, err := unix.Mmap(-1, 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(mem)
	for off := 0; off < len(mem); {
		n, err := f.Read(mem[off:min(off+4<<20, len(mem))])
		if err != nil {
			b.Fatal(err)
		}
		off += n
	}
	return time.Since(start)
}

var nsRe = regexp.MustCompile(`ns_per_call=([0-9.]+)`)

// BenchmarkProxyCall compares a vDSO call through cached pointers before a
// dump and after a restore through the proxy (and after a remap).
func BenchmarkProxyCall(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	subject := testutil.BuildC(b, "vdsocall.c")
	for b.Loop() {
		s := testutil.StartSubject(b, subject)
		native := callCost(b, s)
		costs := map[string]float64{}
		for _, mode := range []string{"remap", "proxy"} {
			images := filepath.Join(b.TempDir(), mode)
			run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
			s.ReapDumped(b)
			run(b, cryo, "restore", "-D", images, "-d", "--vdso="+mode)
			s.Restored()
			costs[mode] = callCost(b, s)
		}
		b.ReportMetric(native, "native-ns")
		b.ReportMetric(costs["remap"], "remap-ns")
		b.ReportMetric(costs["proxy"], "proxy-ns")
		b.ReportMetric(costs["proxy"]/native, "proxy-x-native")
		s.Kill()
	}
}

// callCost is the median ns per call of the subject's next 9 ticks.
func callCost(b *testing.B, s *testutil.Subject) float64 {
	b.Helper()
	start := s.Ticks()
	s.WaitTicks(b, 9)
	var v []float64
	for _, t := range s.TickLines()[start:] {
		if x, err := strconv.ParseFloat(t.Fields["ns_per_call"], 64); err == nil {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		b.Fatal("no ns_per_call in the ticks")
	}
	for i := range v {
		for j := i + 1; j < len(v); j++ {
			if v[j] < v[i] {
				v[i], v[j] = v[j], v[i]
			}
		}
	}
	return v[len(v)/2]
}

// BenchmarkTree dumps and restores a tree of 100 processes of 10 MiB each
// and, in the same run, one process of 1000 MiB: the ratio of the tree's
// time to the one process's is the cost of the processes themselves.
func BenchmarkTree(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	mem := testutil.BuildC(b, "mem.c")
	shapes := []struct {
		name      string
		mib, proc int
	}{{"tree-100x10MiB", 10, 100}, {"one-1000MiB", 1000, 1}}
	var dump, restore [2]time.Duration
	for b.Loop() {
		for i, sh := range shapes {
			s := testutil.StartSubject(b, mem, strconv.Itoa(sh.mib), strconv.Itoa(sh.proc))
			pids := append([]int{s.Pid}, children(b, s.Pid)...)
			if len(pids) != sh.proc {
				b.Fatalf("%s: %d processes, want %d", sh.name, len(pids), sh.proc)
			}
			images := filepath.Join(b.TempDir(), "images")
			_, _, out := run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
			dump[i] += logged(b, out, "total")
			s.ReapDumped(b)
			if err := testutil.WaitPidsFree(pids...); err != nil {
				b.Fatal(err)
			}
			_, _, out = run(b, cryo, "restore", "-D", images, "-d")
			s.Restored()
			restore[i] += logged(b, out, "took")
			s.WaitTicks(b, 1)
			s.Kill()
			if err := testutil.WaitPidsFree(pids...); err != nil {
				b.Fatal(err)
			}
		}
	}
	n := time.Duration(b.N)
	for i, sh := range shapes {
		b.ReportMetric(float64(dump[i]/n)/1e6, sh.name+"-dump-ms")
		b.ReportMetric(float64(restore[i]/n)/1e6, sh.name+"-restore-ms")
	}
	b.ReportMetric(dump[0].Seconds()/dump[1].Seconds(), "x-dump-vs-one")
	b.ReportMetric(restore[0].Seconds()/restore[1].Seconds(), "x-restore-vs-one")
}

// children lists the children of process pid's main thread.
func children(b *testing.B, pid int) []int {
	b.Helper()
	data, err := os.ReadFile(proc.Path(pid, fmt.Sprintf("task/%d/children", pid)))
	if err != nil {
		b.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		k, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

var fdCounts = []int{1000, 10000}

// fdsSpare is how many numbers the subject of BenchmarkFds leaves free in
// its RLIMIT_NOFILE above its descriptors.
const fdsSpare = 100

// BenchmarkFds dumps and restores test/subjects/manyfds.c with 1,000 and
// 10,000 descriptors, in a limit little above them. The time per
// descriptor is what shows whether both grow linearly with the table.
// The baselines are what any dump must read (every descriptor's fdinfo
// and link in /proc) and what making such a table costs the kernel
// (the same kinds of descriptors made here, no injection).
func BenchmarkFds(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	subject := testutil.BuildC(b, "manyfds.c")
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	for _, count := range fdCounts {
		b.Run(fmt.Sprintf("%dfds", count), func(b *testing.B) {
			if rl.Max < uint64(count+fdsSpare) {
				b.Skipf("RLIMIT_NOFILE hard limit %d: no room for %d descriptors", rl.Max, count)
			}
			dir, err := filepath.EvalSymlinks(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			s := testutil.StartSubject(b, subject, dir, strconv.Itoa(count), strconv.Itoa(fdsSpare))
			images := filepath.Join(b.TempDir(), "images")
			// An untimed round warms the page cache and this VM's memory.
			run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images, "--leave-running")
			os.RemoveAll(images)
			var dump, dumpFiles, dumpBase, restore, restoreFiles, restoreBase time.Duration
			for b.Loop() {
				_, _, out := run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
				dump += logged(b, out, "total")
				dumpFiles += stepTook(b, out, "files")
				s.ReapDumped(b)
				_, _, out = run(b, cryo, "restore", "-D", images, "-d")
				restore += logged(b, out, "took")
				restoreFiles += stepTook(b, out, "files")
				s.Restored()
				s.WaitTicks(b, 1)
				dumpBase += baselineFdsDump(b, s.Pid)
				restoreBase += baselineFdsRestore(b, dir, count)
				os.RemoveAll(images)
			}
			// Per descriptor: the files step's time, the rest of a dump
			// or restore being the same whatever the count.
			n := time.Duration(b.N)
			b.ReportMetric(float64(dump/n)/1e6, "dump-ms")
			b.ReportMetric(float64(dumpFiles/n)/1e3/float64(count), "dump-µs/fd")
			b.ReportMetric(dumpFiles.Seconds()/dumpBase.Seconds(), "dump-x-baseline")
			b.ReportMetric(float64(restore/n)/1e6, "restore-ms")
			b.ReportMetric(float64(restoreFiles/n)/1e3/float64(count), "restore-µs/fd")
			b.ReportMetric(restoreFiles.Seconds()/restoreBase.Seconds(), "restore-x-baseline")
			s.Kill()
		})
	}
}

// baselineFdsDump reads the fdinfo and link of every descriptor of pid.
func baselineFdsDump(b testing.TB, pid int) time.Duration {
	b.Helper()
	start := time.Now()
	fds, err := proc.ReadFds(pid)
	if err != nil {
		b.Fatal(err)
	}
	for _, fd := range fds {
		if _, err := proc.ReadFdinfo(pid, fd); err != nil {
			b.Fatal(err)
		}
		if _, err := os.Readlink(proc.Path(pid, "fd/"+strconv.Itoa(fd))); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// baselineFdsRestore makes count descriptors here of the subject's kinds,
// in its proportions (a dup, a file of its own at a position, a pipe's
// two ends, an eventfd), and closes them.
func baselineFdsRestore(b testing.TB, dir string, count int) time.Duration {
	b.Helper()
	start := time.Now()
	shared, err := unix.Open(filepath.Join(dir, "shared-0"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	fds := []int{shared}
	for i := 0; len(fds) < count; i++ {
		switch i % 4 {
		case 0:
			fd, err := unix.Dup(shared)
			if err != nil {
				b.Fatal(err)
			}
			fds = append(fds, fd)
		case 1:
			fd, err := unix.Open(filepath.Join(dir, "own"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unix.Seek(fd, int64(i), io.SeekStart); err != nil {
				b.Fatal(err)
			}
			fds = append(fds, fd)
		case 2:
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				b.Fatal(err)
			}
			fds = append(fds, p[0], p[1])
		case 3:
			fd, err := unix.Eventfd(uint(i), unix.EFD_CLOEXEC)
			if err != nil {
				b.Fatal(err)
			}
			fds = append(fds, fd)
		}
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	return time.Since(start)
}

// BenchmarkScale dumps and restores test/subjects/scale.c with 1,000
// threads and with 30,000 mappings of two VMAs each (60,000 VMAs). The
// baseline is what making them took the subject itself, in the same run:
// restore-x-setup is how many times that a restore takes.
func BenchmarkScale(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	subject := testutil.BuildC(b, "scale.c", "-pthread")
	for _, sh := range []struct {
		kind  string
		count int
	}{{"threads", 1000}, {"maps", 30000}} {
		b.Run(fmt.Sprintf("%d%s", sh.count, sh.kind), func(b *testing.B) {
			var dump, restore, setup time.Duration
			for b.Loop() {
				s := testutil.StartSubject(b, subject, sh.kind, strconv.Itoa(sh.count))
				ns, err := strconv.ParseInt(s.Ready["setup_ns"], 10, 64)
				if err != nil {
					b.Fatalf("subject's ready line: %v", err)
				}
				setup += time.Duration(ns)
				images := filepath.Join(b.TempDir(), "images")
				_, _, out := run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
				dump += logged(b, out, "total")
				s.ReapDumped(b)
				_, _, out = run(b, cryo, "restore", "-D", images, "-d")
				restore += logged(b, out, "took")
				s.Restored()
				s.WaitTicks(b, 2)
				s.Kill()
			}
			n := time.Duration(b.N)
			b.ReportMetric(float64(dump/n)/1e6, "dump-ms")
			b.ReportMetric(float64(restore/n)/1e6, "restore-ms")
			b.ReportMetric(float64(setup/n)/1e6, "setup-ms")
			b.ReportMetric(restore.Seconds()/setup.Seconds(), "restore-x-setup")
		})
	}
}

// BenchmarkConns dumps and restores test/subjects/scale.c holding 10,000
// established TCP connections whose peers are the benchmark's, outside the
// checkpoint: a --leave-running dump (its frozen time), then a dump that
// kills the subject, and the restore, after which every peer finds its
// connection still there (no reset, no end of stream). The baseline is
// what opening the connections took the subject, in the same run.
func BenchmarkConns(b *testing.B) {
	testutil.RequireRoot(b)
	cryo := testutil.BuildGo(b, "./cmd/cryo")
	subject := testutil.BuildC(b, "scale.c", "-pthread")
	const count = 10000
	var dump, restore, frozen, setup time.Duration
	for b.Loop() {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		accepted := make(chan []net.Conn, 1)
		go func() {
			var peers []net.Conn
			for len(peers) < count {
				c, err := l.Accept()
				if err != nil {
					break
				}
				peers = append(peers, c)
			}
			accepted <- peers
		}()
		s := testutil.StartSubject(b, subject, "conns", strconv.Itoa(count), strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		ns, err := strconv.ParseInt(s.Ready["setup_ns"], 10, 64)
		if err != nil {
			b.Fatalf("subject's ready line: %v", err)
		}
		setup += time.Duration(ns)
		peers := <-accepted
		l.Close()
		if len(peers) != count {
			b.Fatalf("accepted %d connections, want %d", len(peers), count)
		}
		dir := b.TempDir()
		_, _, out := run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", filepath.Join(dir, "live"), "--leave-running")
		frozen += logged(b, out, "frozen")
		s.WaitTicks(b, 1)
		images := filepath.Join(dir, "images")
		_, _, out = run(b, cryo, "dump", "-t", strconv.Itoa(s.Pid), "-D", images)
		dump += logged(b, out, "total")
		s.ReapDumped(b)
		_, _, out = run(b, cryo, "restore", "-D", images, "-d")
		restore += logged(b, out, "took")
		s.Restored()
		s.WaitTicks(b, 2)
		for i, c := range peers {
			// Each sent its index, which its peer reads now; then nothing.
			if i%100 == 0 {
				idx := make([]byte, 8)
				c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := io.ReadFull(c, idx); err != nil {
					b.Fatalf("peer %d: read the index: %v", i, err)
				}
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(idx); !errors.Is(err, os.ErrDeadlineExceeded) {
					b.Fatalf("peer %d: %v, want nothing more to read", i, err)
				}
			}
		}
		s.Kill()
		for _, c := range peers {
			c.Close()
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(frozen/n)/1e6, "frozen-ms")
	b.ReportMetric(float64(dump/n)/1e6, "dump-ms")
	b.ReportMetric(float64(restore/n)/1e6, "restore-ms")
	b.ReportMetric(float64(setup/n)/1e6, "setup-ms")
	b.ReportMetric(dump.Seconds()/setup.Seconds(), "dump-x-setup")
	b.ReportMetric(restore.Seconds()/setup.Seconds(), "restore-x-setup")
}
