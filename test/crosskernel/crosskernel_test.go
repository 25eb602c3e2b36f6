package crosskernel

import (
	"bytes"
	"context"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/cpu"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/test/qemu"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

var matrixFile = flag.String("matrix-md", "", "also write the matrix as Markdown to this `file` (relative to the package directory)")

// Environment switches, documented in the README.
const (
	// envMatrix selects the run: unset or "subset" for the default
	// subset, "full" for all 16 ordered pairs of kernels and the chain,
	// or FROM:TO pairs and "chain", comma-separated (see selectRun).
	envMatrix = "CRYO_MATRIX"
	// envKeep keeps the root directory (binaries, outputs, images, logs)
	// after the test, for a post-mortem.
	envKeep = "CRYO_XK_KEEP"
	// envConsole streams every guest's console into the test log.
	envConsole = "CRYO_XK_CONSOLE"
)

// Subjects and their environment. Most of it keeps them off CPU features
// the emulated CPU (qemu TCG "max") lacks: AVX-512, RTM and XSAVEC for
// glibc's ifuncs, AVX-512, SHA-NI and VPCLMULQDQ for Go. A process restored
// on a CPU without an instruction it was set up to use dies of SIGILL;
// cryo's CPU check cannot see these masks, so it refuses host dumps in the
// guests, which run with --allow-missing-cpu-features (Job.CPUOverride)
// and need the masks to survive. containermaxprocs=0 makes the Go runtime (>= 1.25) close
// the cgroup CPU file it otherwise keeps open for its lifetime: a path
// (/sys/fs/cgroup/...) that the guests, which mount no cgroups, lack.
var subjects = []Subject{
	{Name: "vdsoclock", Short: "C", Env: []string{"GLIBC_TUNABLES=" + glibcTunables}},
	{Name: "goclock", Short: "Go", Env: []string{"GODEBUG=" + goDebug}},
	// A tree (test/subjects/tree.c): a root and its children passing
	// numbers through pipes, shared memory, zombies, process groups.
	{Name: "tree", Short: "tree", Env: []string{"GLIBC_TUNABLES=" + glibcTunables}},
}

const (
	glibcTunables = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512CD,-AVX512DQ,-RTM,-XSAVEC"
	goDebug       = "cpu.avx512f=off,cpu.avx512cd=off,cpu.avx512bw=off,cpu.avx512dq=off,cpu.avx512vl=off,cpu.sha=off,cpu.vpclmulqdq=off,containermaxprocs=0"
)

// guestCPU is the guests' qemu -cpu: qemu's "max", with its protection
// keys and MPX (their state is enabled, unused, and must not stop a guest
// dump from restoring here), less two things:
//   - CMPXCHG16B: with it, Linux 6.12's SLUB fast path under QEMU 7.2's TCG
//     corrupts the guest kernel's memory within seconds (double faults in
//     kmem_cache_alloc at its cmpxchg16b, with garbage in EFLAGS, with or
//     without cryo running; seen again 2026-12-06); 5.10 and 6.1 are
//     unaffected.
//   - the instruction sets user space dispatches on (cpu.Dispatched) that
//     this host lacks, e.g. RDTSCP here: a guest process may have chosen
//     code that uses them, and cryo's check rightly refuses to restore it
//     here. Without them, guest dumps restore on the host with no override.
func guestCPU(ctx context.Context, t *testing.T) string {
	flags, err := qemu.CPUFlags(ctx, &testWriter{t: t})
	if err != nil {
		t.Fatal(err)
	}
	h := cpu.ReadHost()
	have := h.Caps.Usable(h.XCR0)
	spec := "max,cx16=off"
	for _, f := range cpu.Dispatched {
		if slices.Contains(have, f.Name) {
			continue
		}
		// qemu spells sse4_1 sse4.1, avx512_vnni avx512vnni, sha_ni sha-ni.
		for _, sep := range []string{"-", ".", ""} {
			if n := strings.ReplaceAll(f.Name, "_", sep); flags[n] {
				spec += "," + n + "=off"
				break
			}
		}
	}
	return spec
}

// cpuNote says how the subjects are started and why.
func cpuNote(guestCPU string) string {
	return "Subjects start everywhere with GLIBC_TUNABLES=" + glibcTunables + " (C) and\n" +
		"GODEBUG=" + goDebug + " (Go),\n" +
		"which keep them off instructions the guests' CPU (qemu TCG -cpu " + guestCPU + ") lacks, and the Go runtime from keeping a cgroup file open.\n" +
		"Guest dumps restore on the host without --allow-missing-cpu-features: the guests' CPU offers no instruction set the host lacks.\n" +
		"Host dumps restored in guests need it: the host's CPU offered AVX-512, SHA-NI and more when the subject started, and cryo cannot\n" +
		"see that the tunables kept the subject off them (glibc and Go read CPUID at start-up whatever the masks), so it refuses, as it should."
}

// hostLabel is the host kernel's major.minor.
func hostLabel() string {
	rel := Release()
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return rel
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	label := parts[0] + "." + minor
	if _, clash := GuestKernels[label]; clash {
		label += "-host"
	}
	return label
}

// TestCrossKernel dumps the subjects on some kernels and restores them on
// others: by default every ordered pair of {5.10, 6.1, 6.12, host} and the
// chain host -> 6.1 -> 6.12 -> host (under a minute on 2 cores); with
// CRYO_MATRIX=subset only host <-> 6.1 and 5.10 -> host.
func TestCrossKernel(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped under -short: boots Linux guests under qemu (TCG); needs qemu-system-x86 and Debian's kernel packages")
	}
	host := hostLabel()
	kernels := []string{"5.10", "6.1", "6.12", host}
	run := os.Getenv(envMatrix)
	pairs, chain, full, err := selectRun(run, kernels, host)
	if err != nil {
		t.Fatal(err)
	}

	// The whole run is bounded: by the test binary's -timeout, less a
	// margin for the report, and by a limit of its own, several times what
	// it takes on a 2-core machine (subset about 15 s, full about 1 min).
	limit := 10 * time.Minute
	if full {
		limit = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if dl, ok := t.Deadline(); ok {
		var cancel2 context.CancelFunc
		ctx, cancel2 = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel2()
	}

	bins := map[string]string{
		"cryo":      testutil.BuildGo(t, "./cmd/cryo"),
		"guest":     testutil.BuildGo(t, "./test/crosskernel/guest"),
		"vdsoclock": testutil.BuildC(t, "vdsoclock.c", "-static"),
		"goclock":   testutil.BuildGo(t, "./test/subjects/goclock"),
		"tree":      testutil.BuildC(t, "tree.c", "-static"),
	}
	for name, p := range bins {
		if err := checkStatic(p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	root, err := os.MkdirTemp("", "cryo-xk-")
	if err != nil {
		t.Fatal(err)
	}
	// Host-only files: initramfs images, disks and the guests' consoles.
	work := root + "-work"
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(envKeep) != "" {
		t.Logf("keeping %s and %s (%s set)", root, work, envKeep)
	} else {
		t.Cleanup(func() {
			os.RemoveAll(root)
			os.RemoveAll(work)
		})
	}
	// Guest dumps get PIDs this machine leaves free, and holds until the
	// host restores them with those PIDs.
	var guestDumps []string
	for _, k := range kernels[:3] {
		for _, s := range subjects {
			guestDumps = append(guestDumps, k+"/"+s.Name)
		}
	}
	starts, holds := holdPidBlocks(t, len(guestDumps), 64)
	pids := map[string]int{}
	for i, d := range guestDumps {
		pids[d] = starts[i]
	}
	plan, err := NewPlan(root, host, kernels, subjects, pairs, chain, pids)
	if err != nil {
		t.Fatal(err)
	}
	switch run {
	case "", "subset":
		plan.Name = "subset (host <-> 6.1, 5.10 -> host); " + envMatrix + "=full runs every pair and the chain"
	case "full":
		plan.Name = "full (" + envMatrix + "=full): every ordered pair of kernels and the chain"
	default:
		plan.Name = envMatrix + "=" + run
	}

	logw := &testWriter{t: t}
	gcpu := guestCPU(ctx, t)
	t.Logf("guests' CPU: -cpu %s", gcpu)
	cfg := Config{
		Root: root, Work: work,
		Cryo: bins["cryo"], Guest: bins["guest"],
		Subjects: map[string]string{"vdsoclock": bins["vdsoclock"], "goclock": bins["goclock"], "tree": bins["tree"]},
		Plan:     plan,
		Fetcher:  &qemu.Fetcher{Log: logw},
		Parallel: max(1, min(2, runtime.NumCPU())),
		Opts:     DefaultRunnerOptions,
		// A boot reaches init in about 5 s; a job takes seconds under
		// TCG. The limits are for a guest that hangs.
		BootTimeout: 2 * time.Minute, JobTimeout: time.Minute,
		Memory: "1G",
		CPU:    gcpu,
		Log:    logw,
	}
	if os.Getenv(envConsole) != "" {
		cfg.Console = logw
	}
	// A host dump's IDs are free once it ends; holding them keeps the
	// restore of the chain's last hop from finding them taken.
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range holds[len(starts):] {
			if err := h.Release(); err != nil {
				t.Error(err)
			}
		}
	})
	cfg.HoldPids = func(ids []int) error {
		h, err := HoldPids(ids)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		holds = append(holds, h)
		return nil
	}
	cfg.FreePid = func(pid int) error {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range holds {
			if h.Holds(pid) {
				return h.Release()
			}
		}
		return nil
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("cross-kernel harness: %v", err)
	}
	rep.CPUNote = cpuNote(gcpu)
	md := rep.Markdown()
	t.Logf("\n%s", md)
	if *matrixFile != "" {
		if err := os.WriteFile(*matrixFile, []byte(md), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, r := range rep.Failed() {
		t.Errorf("%s", r.Err)
	}
}

// selectRun reads CRYO_MATRIX: empty or "full" for every ordered pair and
// the chain; "subset" for host <-> 6.1 and 5.10 -> host; or, to debug
// one case, a comma-separated list of FROM:TO pairs and "chain", e.g.
// "5.10:6.12,chain".
func selectRun(v string, kernels []string, host string) (pairs []Pair, chain []string, full bool, err error) {
	fullChain := []string{host, "6.1", "6.12", host}
	switch v {
	case "subset":
		return []Pair{{host, "6.1"}, {"6.1", host}, {"5.10", host}}, nil, false, nil
	case "", "full":
		for _, from := range kernels {
			for _, to := range kernels {
				pairs = append(pairs, Pair{from, to})
			}
		}
		return pairs, fullChain, true, nil
	}
	for _, w := range strings.Split(v, ",") {
		w = strings.TrimSpace(w)
		from, to, ok := strings.Cut(w, ":")
		switch {
		case w == "chain":
			chain = fullChain
		case ok:
			pairs = append(pairs, Pair{from, to})
		default:
			return nil, nil, false, fmt.Errorf("%s=%q: want subset, full, or FROM:TO pairs and chain (kernels %v)", envMatrix, v, kernels)
		}
	}
	return pairs, chain, true, nil
}

// checkStatic makes sure a binary runs without the host's libraries: the
// guests have none.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guests need static binaries", filepath.Base(path))
		}
	}
	return nil
}

// testWriter sends each line to the test log.
type testWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(b), nil
		}
		w.t.Log(strings.TrimRight(line, "\n"))
	}
}

// holdPidBlocks holds n blocks of size PIDs that this machine leaves
// free, until the test ends at the latest, and returns where each starts.
func holdPidBlocks(t *testing.T, n, size int) ([]int, []*PidHold) {
	t.Helper()
	// A few more than needed: a PID found free may be taken before it
	// is held.
	blocks, err := FreePidBlocks(n+4, size)
	if err != nil {
		t.Fatal(err)
	}
	var starts []int
	var holds []*PidHold
	t.Cleanup(func() {
		for _, h := range holds {
			if err := h.Release(); err != nil {
				t.Error(err)
			}
		}
	})
	for _, b := range blocks {
		if len(holds) == n {
			break
		}
		h, err := HoldPids(PidBlock(b, size))
		if err != nil {
			t.Logf("block %d: %v", b, err)
			continue
		}
		starts, holds = append(starts, b), append(holds, h)
	}
	if len(holds) < n {
		t.Fatalf("held %d blocks of %d PIDs, want %d", len(holds), size, n)
	}
	return starts, holds
}
