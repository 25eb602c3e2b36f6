package crosskernel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cryo-cr/cryo/test/qemu"
)

// GuestKernels are the Debian kernels the harness boots, by label.
var GuestKernels = map[string]qemu.KernelSpec{
	"5.10": qemu.Debian510,
	"6.1":  qemu.Debian61,
	"6.12": qemu.Debian612,
}

// Config is one run of the harness.
type Config struct {
	// Root is the directory whose absolute path is the same on the host
	// and in every guest; the harness puts the binaries into Root/bin.
	Root string
	// Work holds the host-only files: initramfs images, disks, consoles.
	Work string
	// Cryo and Guest are static builds of cmd/cryo and ./guest; Subjects
	// maps each plan subject to its static binary.
	Cryo, Guest string
	Subjects    map[string]string
	Plan        *Plan
	Fetcher     *qemu.Fetcher
	// Parallel is the number of guests booted at once (at least 1).
	Parallel int
	Opts     RunnerOptions
	// BootTimeout bounds a boot with no jobs; each job adds JobTimeout.
	BootTimeout, JobTimeout time.Duration
	// Memory is each guest's RAM (qemu -m); CPU its qemu -cpu.
	Memory, CPU string
	// Log receives progress; Console, if set, every guest's console.
	Log, Console io.Writer
	// HoldPids and FreePid are the host runner's (Runner.HoldPids and
	// Runner.FreePid).
	HoldPids func(ids []int) error
	FreePid  func(pid int) error
}

// Boot records one guest boot.
type Boot struct {
	Kernel  string
	Release string
	Round   int
	Jobs    int
	Elapsed time.Duration
	Err     string
}

// Report is the outcome of a run.
type Report struct {
	Plan     *Plan
	Results  map[string]Result // by job ID
	Boots    []Boot
	Releases map[string]string // kernel label -> uname -r
	Wall     time.Duration
	// CPUNote says how the subjects are kept off CPU features the guests
	// lack (for the legend).
	CPUNote string
}

// Run carries out the plan. Job failures are in the report; the error is
// for what stops the run as a whole: a kernel that cannot be fetched, no
// qemu, a build that is missing.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	start := time.Now()
	h := &harness{cfg: cfg, made: map[string]bool{}, kernels: map[string]*qemu.Kernel{},
		rep: &Report{Plan: cfg.Plan, Results: map[string]Result{}, Releases: map[string]string{cfg.Plan.Host: Release()}}}
	if h.cfg.Parallel < 1 {
		h.cfg.Parallel = 1
	}
	if err := h.prepare(ctx); err != nil {
		return nil, err
	}
	pending := append([]Job(nil), cfg.Plan.Jobs...)
	for r := 0; len(pending) > 0; r++ {
		if err := ctx.Err(); err != nil {
			return h.rep, fmt.Errorf("round %d: %w", r, err)
		}
		groups := round(pending, h.made)
		if len(groups) == 0 {
			break
		}
		var wg sync.WaitGroup
		hostJobs := groups[cfg.Plan.Host]
		delete(groups, cfg.Plan.Host)
		if r == 0 && len(hostJobs) > 0 {
			// The host's first dumps are quick and most guests need
			// them: run them before the first boots.
			h.runHost(ctx, hostJobs)
			pending = removeDone(pending, h.rep.Results)
			groups = round(pending, h.made)
			hostJobs = groups[cfg.Plan.Host]
			delete(groups, cfg.Plan.Host)
		}
		if len(hostJobs) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.runHost(ctx, hostJobs)
			}()
		}
		lanes := make(chan struct{}, h.cfg.Parallel)
		for _, k := range sortedKeys(groups) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lanes <- struct{}{}
				defer func() { <-lanes }()
				h.boot(ctx, r, k, groups[k])
			}()
		}
		wg.Wait()
		pending = removeDone(pending, h.rep.Results)
	}
	// What is left waited for an artifact that was never made.
	for _, j := range pending {
		by, why := h.why(j.From)
		h.record(Result{ID: j.ID, Kernel: j.Kernel, Skipped: true, BlockedBy: by,
			Err: fmt.Sprintf("%s on %s: not run: %s", j.ID, j.Kernel, why)})
	}
	h.rep.Wall = time.Since(start)
	return h.rep, nil
}

type harness struct {
	cfg     Config
	base    []byte // the initramfs around the guest's /init
	kernels map[string]*qemu.Kernel
	modules map[string][]string

	mu   sync.Mutex
	made map[string]bool // artifacts present under Root on the host
	rep  *Report
}

func (h *harness) logf(format string, args ...any) {
	if h.cfg.Log != nil {
		fmt.Fprintf(h.cfg.Log, format+"\n", args...)
	}
}

// prepare installs the binaries, fetches the kernels and checks qemu.
func (h *harness) prepare(ctx context.Context) error {
	bin := filepath.Join(h.cfg.Root, binDir)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	copies := map[string]string{"cryo": h.cfg.Cryo}
	for _, s := range h.cfg.Plan.Subjects {
		src := h.cfg.Subjects[s.Name]
		if src == "" {
			return fmt.Errorf("no binary for subject %s", s.Name)
		}
		copies[s.Name] = src
	}
	for name, src := range copies {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		dst := filepath.Join(bin, name)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		// The same file on every kernel, as a package deploys it, mtime
		// included (0, as the guests give theirs): a restore checks that
		// the files a process had are the ones dumped.
		if err := os.Chtimes(dst, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(h.cfg.Work, 0o755); err != nil {
		return err
	}
	guests := map[string]bool{}
	for _, j := range h.cfg.Plan.Jobs {
		if j.Kernel != h.cfg.Plan.Host {
			guests[j.Kernel] = true
		}
	}
	if len(guests) == 0 {
		return nil
	}
	if _, err := qemu.EnsureQEMU(ctx, h.cfg.Log); err != nil {
		return err
	}
	init, err := os.ReadFile(h.cfg.Guest)
	if err != nil {
		return fmt.Errorf("guest init: %w", err)
	}
	var b bytes.Buffer
	if err := qemu.WriteCPIO(&b, qemu.BasicInitramfs(init)); err != nil {
		return err
	}
	h.base = b.Bytes()
	h.modules = map[string][]string{}
	for _, label := range sortedKeys(guests) {
		spec, ok := GuestKernels[label]
		if !ok {
			return fmt.Errorf("kernel %s: no Debian package known for it", label)
		}
		k, err := h.cfg.Fetcher.Fetch(ctx, spec)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", label, err)
		}
		mods, err := k.FindModules(qemu.VirtioBlkModules, qemu.VirtioBlkDeps)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", label, err)
		}
		h.kernels[label], h.modules[label] = k, mods
		h.rep.Releases[label] = k.Release
		h.logf("kernel %s: %s, %d virtio modules to load", label, k.Release, len(mods))
	}
	return nil
}

// record stores a result and, for a job that made an artifact, notes it.
func (h *harness) record(res Result, made ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rep.Results[res.ID] = res
	for _, a := range made {
		h.made[a] = true
	}
}

// why explains why an artifact is missing: it names the job that should
// have made it.
func (h *harness) why(artifact string) (job, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, j := range h.cfg.Plan.Jobs {
		if j.Into == artifact {
			if r, ok := h.rep.Results[j.ID]; ok && !r.OK {
				return j.ID, j.ID + " failed"
			}
			return j.ID, j.ID + " did not run"
		}
	}
	return "", "no job makes " + artifact
}

func (h *harness) runHost(ctx context.Context, jobs []Job) {
	r := &Runner{Root: h.cfg.Root, Kernel: h.cfg.Plan.Host, Release: Release(), Opts: h.cfg.Opts, Log: h.cfg.Log, HoldPids: h.cfg.HoldPids, FreePid: h.cfg.FreePid}
	for i, res := range RunJobs(ctx, r, jobs) {
		if res.OK && jobs[i].Into != "" {
			h.record(res, jobs[i].Into)
		} else {
			h.record(res)
		}
	}
}

// boot runs jobs in a guest of kernel label and records their results.
func (h *harness) boot(ctx context.Context, rnd int, label string, jobs []Job) {
	start := time.Now()
	rec := Boot{Kernel: label, Release: h.rep.Releases[label], Round: rnd, Jobs: len(jobs)}
	results, made, err := h.bootGuest(ctx, rnd, label, jobs)
	rec.Elapsed = time.Since(start)
	if err != nil {
		rec.Err = err.Error()
		h.logf("boot %s (round %d): %v", label, rnd, err)
	} else {
		h.logf("boot %s (round %d): %d jobs in %v", label, rnd, len(jobs), rec.Elapsed.Round(time.Second))
	}
	h.mu.Lock()
	h.rep.Boots = append(h.rep.Boots, rec)
	h.mu.Unlock()
	got := map[string]Result{}
	for _, r := range results {
		got[r.ID] = r
	}
	for _, j := range jobs {
		res, ok := got[j.ID]
		switch {
		case !ok && err != nil:
			res = Result{ID: j.ID, Kernel: label, Release: rec.Release, Err: fmt.Sprintf("%s on %s: %v", j.ID, label, err)}
		case !ok:
			res = Result{ID: j.ID, Kernel: label, Release: rec.Release, Err: fmt.Sprintf("%s on %s: the guest reported no result", j.ID, label)}
		case res.OK && j.Into != "" && !made[j.Into]:
			res.OK = false
			res.Err = fmt.Sprintf("%s on %s: artifact %s did not come back from the guest: %v", j.ID, label, j.Into, err)
		}
		if res.OK && j.Into != "" {
			h.record(res, j.Into)
		} else {
			h.record(res)
		}
	}
}

// bootGuest builds the initramfs for jobs, boots the kernel, and collects
// the results and the artifacts the guest made.
func (h *harness) bootGuest(ctx context.Context, rnd int, label string, jobs []Job) ([]Result, map[string]bool, error) {
	k := h.kernels[label]
	name := fmt.Sprintf("%s-round%d", label, rnd)
	capBound, err := CapBound()
	if err != nil {
		return nil, nil, err
	}
	rlimits, err := Rlimits()
	if err != nil {
		return nil, nil, err
	}
	sc := Scenario{Kernel: label, Root: h.cfg.Root, Disk: "/dev/vda", Opts: h.cfg.Opts,
		CapBound: capBound, Rlimits: rlimits}
	sc.Jobs = append(sc.Jobs, jobs...)
	var files []qemu.File
	for i, m := range h.modules[label] {
		f, err := qemu.FileFromDisk(fmt.Sprintf("xk/modules/%02d-%s", i, filepath.Base(m)), m)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
		sc.Modules = append(sc.Modules, "/"+f.Name)
	}
	scb, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	files = append(files, qemu.File{Name: "xk/scenario.json", Mode: 0o644, Data: scb})
	// Binaries and the artifacts the jobs restore, at their host paths.
	dirs := []string{filepath.Join(h.cfg.Root, binDir)}
	h.mu.Lock()
	for _, j := range jobs {
		if j.From != "" && h.made[j.From] {
			dirs = append(dirs, ArtifactDir(h.cfg.Root, j.From))
		}
	}
	h.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			f, err := qemu.FileFromDisk(filepath.Join("xk/root", p), p)
			files = append(files, f)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("inputs for %s: %w", name, err)
		}
	}
	var inputs bytes.Buffer
	inputs.Write(h.base)
	// A second archive appended to the first: the kernel unpacks both.
	if err := qemu.WriteCPIO(&inputs, files); err != nil {
		return nil, nil, err
	}
	initrd := filepath.Join(h.cfg.Work, "initrd-"+name+".cpio")
	if err := os.WriteFile(initrd, inputs.Bytes(), 0o644); err != nil {
		return nil, nil, err
	}
	defer os.Remove(initrd)
	disk := filepath.Join(h.cfg.Work, "disk-"+name+".img")
	if err := makeDisk(disk, diskSize); err != nil {
		return nil, nil, err
	}
	defer os.Remove(disk)
	consolePath := filepath.Join(h.cfg.Work, "console-"+name+".txt")
	console, err := os.Create(consolePath)
	if err != nil {
		return nil, nil, err
	}
	defer console.Close()
	var consoleW io.Writer = console
	if h.cfg.Console != nil {
		consoleW = io.MultiWriter(console, prefixWriter(h.cfg.Console, "["+label+"] "))
	}
	h.logf("boot %s: %d jobs, initramfs %d MiB", name, len(jobs), inputs.Len()>>20)
	res, err := qemu.Boot(ctx, qemu.BootConfig{
		Kernel: k.Vmlinuz, Initrd: initrd, Memory: h.cfg.Memory, CPU: h.cfg.CPU,
		Timeout: h.cfg.BootTimeout + time.Duration(len(jobs))*h.cfg.JobTimeout,
		Extra:   []string{"-drive", "file=" + disk + ",format=raw,if=virtio,cache=unsafe"},
		Console: consoleW,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kernel %s (%s): %w (console: %s)", label, k.Release, err, consolePath)
	}
	var results []Result
	frames, ferr := qemu.ParseFrames(res.Console)
	for _, f := range frames {
		if f.Tag == ResultsFrame {
			if err := json.Unmarshal(f.Payload, &results); err != nil {
				return nil, nil, fmt.Errorf("kernel %s: results frame: %w", label, err)
			}
		}
	}
	if results == nil {
		return nil, nil, fmt.Errorf("kernel %s (%s): no results on the console (%v); console tail:\n%s", label, k.Release, ferr, tail(res.Console, 40))
	}
	made := map[string]bool{}
	f, err := os.Open(disk)
	if err != nil {
		return results, made, err
	}
	defer f.Close()
	if _, err := ReadOutputs(f, h.cfg.Root); err != nil {
		return results, made, fmt.Errorf("kernel %s: %w; console tail:\n%s", label, err, tail(res.Console, 20))
	}
	for _, j := range jobs {
		if j.Into == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(ArtifactDir(h.cfg.Root, j.Into), "meta.json")); err == nil {
			made[j.Into] = true
		}
	}
	return results, made, nil
}

// diskSize is the output disk's size: a sparse file, far larger than the
// few MiB of artifacts a boot makes.
const diskSize = 512 << 20

func makeDisk(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func removeDone(jobs []Job, done map[string]Result) []Job {
	var out []Job
	for _, j := range jobs {
		if _, ok := done[j.ID]; !ok {
			out = append(out, j)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// prefixWriter prefixes each line written to w.
func prefixWriter(w io.Writer, prefix string) io.Writer {
	return &linePrefixer{w: w, prefix: prefix, atStart: true}
}

type linePrefixer struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	atStart bool
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, c := range b {
		if p.atStart {
			out.WriteString(p.prefix)
		}
		out.WriteByte(c)
		p.atStart = c == '\n'
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
