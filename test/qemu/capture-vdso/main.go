// Command capture-vdso records the vDSO of several Linux kernels as test
// fixtures for internal/vdso: for each kernel it writes
// linux-MAJOR.MINOR-ARCH.so (the raw vDSO bytes) and .maps (the process's
// [vvar], [vvar_vclock] and [vdso] lines of /proc/self/maps, verbatim).
//
// Older kernels are Debian cloud kernels booted under qemu (TCG) with this
// same program, built static, as /init; the running kernel is captured by
// running the report mode directly. With -i386 a GOARCH=386 build captures
// each kernel's compat (ia32) vDSO as well.
//
// Run from the repository root:
//
//	go run ./test/qemu/capture-vdso
//
// Modes of the same binary:
//
//	(PID 1, argv[0] "/init")  guest init: report, run /init32 -report, power off
//	-report                   print this process's report as a console frame
//	otherwise                 build, boot and write the fixtures
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/test/qemu"
)

// selfPackage is built for the guest; the build runs in the current
// directory, which must be inside the module.
const selfPackage = "github.com/cryo-cr/cryo/test/qemu/capture-vdso"

// frameTag marks the report frames on the console.
const frameTag = "cryo-vdso"

// report is what a capturing process prints about itself.
type report struct {
	Release string   `json:"release"` // uname -r
	Machine string   `json:"machine"` // uname -m
	GOARCH  string   `json:"goarch"`  // the capturing binary's architecture
	Maps    []string `json:"maps"`    // [vvar], [vvar_vclock], [vdso] lines
	VDSO    []byte   `json:"vdso"`
}

func main() {
	if os.Getpid() == 1 && os.Args[0] == "/init" {
		guestInit()
		return
	}
	reportMode := flag.Bool("report", false, "print this process's vDSO report as a console frame and exit")
	out := flag.String("out", "internal/vdso/testdata", "fixture directory")
	cache := flag.String("cache", "", "kernel package cache (default $XDG_CACHE_HOME/cryo/kernels)")
	kernels := flag.String("kernels", "6.1,6.12,5.10", "comma-separated Debian kernels to boot (6.1, 6.12, 5.10); empty for none")
	host := flag.Bool("host", true, "capture the running kernel too")
	i386 := flag.Bool("i386", true, "capture the compat (ia32) vDSO too, with a GOARCH=386 build")
	timeout := flag.Duration("timeout", qemu.DefaultTimeout, "limit for each qemu boot")
	refresh := flag.Bool("refresh", false, "re-resolve the newest kernel packages instead of reusing cached ones")
	verbose := flag.Bool("v", false, "show apt progress and the guest consoles")
	flag.Parse()

	if *reportMode {
		if err := printReport(); err != nil {
			fmt.Fprintf(os.Stderr, "capture-vdso: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	c := &capturer{out: *out, i386: *i386, timeout: *timeout, verbose: *verbose,
		fetcher: &qemu.Fetcher{CacheDir: *cache, Refresh: *refresh}}
	if *verbose {
		c.fetcher.Log = os.Stderr
	}
	if err := c.run(ctx, *host, *kernels); err != nil {
		fmt.Fprintf(os.Stderr, "capture-vdso: %v\n", err)
		os.Exit(1)
	}
}

// Report side: runs in the guest and on the host.

// collect builds the report of the calling process.
func collect() (*report, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	r := &report{Release: unix.ByteSliceToString(uts.Release[:]), Machine: unix.ByteSliceToString(uts.Machine[:]), GOARCH: runtime.GOARCH}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	r.Maps = specialMaps(maps)
	var start, end uint64
	for _, l := range r.Maps {
		if mapName(l) == "[vdso]" {
			if start, end, err = mapRange(l); err != nil {
				return nil, err
			}
		}
	}
	if end == 0 {
		return nil, fmt.Errorf("no [vdso] in /proc/self/maps (kernel booted with vdso=0?)")
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	r.VDSO = make([]byte, end-start)
	if _, err := mem.ReadAt(r.VDSO, int64(start)); err != nil {
		return nil, fmt.Errorf("read [vdso] %#x-%#x from /proc/self/mem: %w", start, end, err)
	}
	return r, nil
}

// specialMaps returns the lines of the vDSO block, in the kernel's (address)
// order and exactly as printed.
func specialMaps(maps []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		switch mapName(sc.Text()) {
		case "[vvar]", "[vvar_vclock]", "[vdso]":
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// mapName is the pathname field of a maps line (the sixth; pseudo names
// have no spaces).
func mapName(line string) string {
	f := strings.Fields(line)
	if len(f) < 6 {
		return ""
	}
	return f[5]
}

func mapRange(line string) (start, end uint64, err error) {
	r, _, _ := strings.Cut(line, " ")
	s, e, ok := strings.Cut(r, "-")
	if ok {
		if start, err = strconv.ParseUint(s, 16, 64); err == nil {
			end, err = strconv.ParseUint(e, 16, 64)
		}
	}
	if !ok || err != nil || end <= start {
		return 0, 0, fmt.Errorf("bad maps line %q", line)
	}
	return start, end, nil
}

func printReport() error {
	r, err := collect()
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return qemu.WriteFrame(os.Stdout, frameTag, b)
}

// guestInit is PID 1 in the initramfs. Whatever happens it powers the
// machine off, so the host never waits for its timeout.
func guestInit() {
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, "capture-vdso: "+format+"\n", args...) }
	err := os.MkdirAll("/proc", 0o555)
	if err == nil {
		err = unix.Mount("proc", "/proc", "proc", 0, "")
	}
	if err == nil {
		err = printReport()
	}
	if err != nil {
		say("error: %v", err)
	}
	if _, err := os.Stat("/init32"); err == nil {
		cmd := exec.Command("/init32", "-report")
		// The initramfs has no /dev/null for os/exec to open as stdin.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			say("error: /init32: %v", err)
		}
	}
	unix.Sync()
	// Let the UART send everything before the power goes (tcdrain).
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1)
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Returning makes the kernel panic, and panic=-1 with -no-reboot ends
	// qemu anyway.
	say("power off: %v", err)
}

// Host side.

type capturer struct {
	out     string
	i386    bool
	timeout time.Duration
	verbose bool
	fetcher *qemu.Fetcher
	tmp     string
}

var specs = map[string]qemu.KernelSpec{
	"6.1":  qemu.Debian61,
	"6.12": qemu.Debian612,
	"5.10": qemu.Debian510,
}

func (c *capturer) run(ctx context.Context, host bool, kernels string) error {
	if st, err := os.Stat(c.out); err != nil || !st.IsDir() {
		return fmt.Errorf("output directory %s missing (run from the repository root or pass -out)", c.out)
	}
	var todo []qemu.KernelSpec
	for k := range strings.SplitSeq(kernels, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		spec, ok := specs[k]
		if !ok {
			return fmt.Errorf("unknown kernel %q (known: 6.1, 6.12, 5.10)", k)
		}
		todo = append(todo, spec)
	}
	var err error
	if c.tmp, err = os.MkdirTemp("", "capture-vdso-"); err != nil {
		return err
	}
	defer os.RemoveAll(c.tmp)
	if err := c.build(ctx, "amd64", "init"); err != nil {
		return err
	}
	if c.i386 {
		if err := c.build(ctx, "386", "init32"); err != nil {
			return err
		}
	}

	var errs []error
	if host {
		if err := c.captureHost(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, spec := range todo {
		err := c.captureKernel(ctx, spec)
		switch {
		case errors.Is(err, qemu.ErrNoPackage):
			fmt.Printf("SKIP %s: %v\n", spec, err)
		case err != nil:
			fmt.Printf("FAIL %s: %v\n", spec, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// build compiles this program statically for goarch into the scratch
// directory: a guest has no libc and the host's i386 libc may be missing.
func (c *capturer) build(ctx context.Context, goarch, name string) error {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(c.tmp, name), selfPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for %s: %w: %s", selfPackage, goarch, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *capturer) captureHost(ctx context.Context) error {
	bins := []string{"init"}
	if c.i386 {
		bins = append(bins, "init32")
	}
	for _, bin := range bins {
		cmd := exec.CommandContext(ctx, filepath.Join(c.tmp, bin), "-report")
		out, err := cmd.Output()
		if err != nil {
			hint := ""
			if bin == "init32" {
				hint = " (-i386=false skips the compat vDSO on kernels without ia32 emulation)"
			}
			return fmt.Errorf("host: %s -report: %w%s", bin, errText(err), hint)
		}
		reports, err := parseReports(out)
		if err != nil {
			return fmt.Errorf("host: %w", err)
		}
		for _, r := range reports {
			name, err := c.write(r)
			if err != nil {
				return fmt.Errorf("host: %w", err)
			}
			fmt.Printf("OK   host %s (%s): %s\n", r.Release, r.GOARCH, name)
		}
	}
	return nil
}

func (c *capturer) captureKernel(ctx context.Context, spec qemu.KernelSpec) error {
	k, err := c.fetcher.Fetch(ctx, spec)
	if err != nil {
		return err
	}
	initBin, err := qemu.FileFromDisk("init", filepath.Join(c.tmp, "init"))
	if err != nil {
		return err
	}
	files := qemu.BasicInitramfs(initBin.Data)
	if c.i386 {
		f, err := qemu.FileFromDisk("init32", filepath.Join(c.tmp, "init32"))
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	initrd := filepath.Join(c.tmp, "initrd-"+k.Release+".cpio")
	if err := qemu.WriteInitramfsFile(initrd, files); err != nil {
		return fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	cfg := qemu.BootConfig{Kernel: k.Vmlinuz, Initrd: initrd, Timeout: c.timeout}
	if c.verbose {
		cfg.Console, cfg.Log = os.Stderr, os.Stderr
	}
	res, err := qemu.Boot(ctx, cfg)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	reports, err := parseReports(res.Console)
	if err == nil && len(reports) == 0 {
		err = errors.New("no report on the console")
	}
	if err != nil {
		return fmt.Errorf("kernel %s (boot %.1fs): %w; console tail:\n%s", k.Release, res.Elapsed.Seconds(), err, lastBytes(res.Console, 3000))
	}
	for _, r := range reports {
		if r.Release != k.Release {
			return fmt.Errorf("kernel %s: guest reports release %s", k.Release, r.Release)
		}
		name, err := c.write(r)
		if err != nil {
			return fmt.Errorf("kernel %s: %w", k.Release, err)
		}
		fmt.Printf("OK   %s (%s, %s): boot %.1fs: %s\n", k.Release, k.Package, r.GOARCH, res.Elapsed.Seconds(), name)
	}
	if c.i386 && len(reports) < 2 {
		fmt.Printf("WARN %s: no i386 report (kernel without ia32 emulation?)\n", k.Release)
	}
	return nil
}

// parseReports decodes every report frame in console output.
func parseReports(console []byte) ([]*report, error) {
	frames, err := qemu.ParseFrames(console)
	if err != nil {
		return nil, err
	}
	var reports []*report
	for _, f := range frames {
		if f.Tag != frameTag {
			continue
		}
		r := new(report)
		if err := json.Unmarshal(f.Payload, r); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		reports = append(reports, r)
	}
	return reports, nil
}

var majorMinor = regexp.MustCompile(`^[0-9]+\.[0-9]+`)

// write checks a report and stores it as a fixture pair; it returns the
// base name.
func (c *capturer) write(r *report) (string, error) {
	arch := map[string]string{"amd64": "amd64", "386": "i386"}[r.GOARCH]
	ver := majorMinor.FindString(r.Release)
	if arch == "" || ver == "" {
		return "", fmt.Errorf("report: unexpected release %q / goarch %q", r.Release, r.GOARCH)
	}
	if !bytes.HasPrefix(r.VDSO, []byte("\x7fELF")) {
		return "", fmt.Errorf("report %s %s: vDSO is not an ELF image", r.Release, arch)
	}
	var vdsoSize uint64
	for _, l := range r.Maps {
		if mapName(l) == "[vdso]" {
			s, e, err := mapRange(l)
			if err != nil {
				return "", err
			}
			vdsoSize = e - s
		}
	}
	if vdsoSize != uint64(len(r.VDSO)) {
		return "", fmt.Errorf("report %s %s: [vdso] maps size %d, got %d bytes", r.Release, arch, vdsoSize, len(r.VDSO))
	}
	base := filepath.Join(c.out, fmt.Sprintf("linux-%s-%s", ver, arch))
	name := filepath.Base(base) + ".{so,maps}"
	// ASLR moves the block on every run: keep the files (and git) quiet
	// unless the image or the layout really changed.
	oldSO, err1 := os.ReadFile(base + ".so")
	oldMaps, err2 := os.ReadFile(base + ".maps")
	if err1 == nil && err2 == nil && bytes.Equal(oldSO, r.VDSO) && sameLayout(strings.Split(strings.TrimSuffix(string(oldMaps), "\n"), "\n"), r.Maps) {
		return name + " (unchanged)", nil
	}
	if err := writeAtomic(base+".so", r.VDSO); err != nil {
		return "", err
	}
	if err := writeAtomic(base+".maps", []byte(strings.Join(r.Maps, "\n")+"\n")); err != nil {
		return "", err
	}
	return name, nil
}

// sameLayout reports whether two sets of maps lines describe the same block
// apart from where ASLR put it: same sizes, relative positions and text
// after the address range.
func sameLayout(a, b []string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	var baseA, baseB uint64
	for i := range a {
		sa, ea, err1 := mapRange(a[i])
		sb, eb, err2 := mapRange(b[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if i == 0 {
			baseA, baseB = sa, sb
		}
		_, restA, _ := strings.Cut(a[i], " ")
		_, restB, _ := strings.Cut(b[i], " ")
		if ea-sa != eb-sb || sa-baseA != sb-baseB || restA != restB {
			return false
		}
	}
	return true
}

func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// errText adds a failed command's stderr to its error.
func errText(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
