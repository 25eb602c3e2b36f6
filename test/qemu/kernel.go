package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ErrNoPackage reports that no package provides the wanted kernel version in
// the configured archives. Callers may treat it as "skip this kernel".
var ErrNoPackage = errors.New("no such kernel package")

// KernelSpec names a Debian kernel to fetch.
type KernelSpec struct {
	// Version is the wanted major.minor, e.g. "6.1"; the fetched kernel must
	// have it.
	Version string
	// Flavour is the Debian kernel flavour, e.g. "cloud-amd64".
	Flavour string
	// Source is the archive to fetch from; nil means the host's apt
	// configuration.
	Source *AptSource
	// Package pins an exact image package (e.g.
	// "linux-image-6.1.0-37-cloud-amd64"); empty picks the newest one of
	// Version, preferring the flavour's meta package dependency.
	Package string
}

func (s KernelSpec) String() string {
	src := "system apt"
	if s.Source != nil {
		src = s.Source.Name
	}
	return fmt.Sprintf("linux %s %s (%s)", s.Version, s.Flavour, src)
}

// Debian cloud kernels: small, built-in virtio and 8250 serial, so they boot
// in qemu from an initramfs without modules.
var (
	// Debian61 is bookworm's kernel.
	Debian61 = KernelSpec{Version: "6.1", Flavour: "cloud-amd64"}
	// Debian612 is trixie's kernel as backported to bookworm.
	Debian612 = KernelSpec{Version: "6.12", Flavour: "cloud-amd64", Source: BookwormBackports}
	// Debian510 is bullseye's kernel.
	Debian510 = KernelSpec{Version: "5.10", Flavour: "cloud-amd64", Source: Bullseye}
)

// Kernel is a fetched and unpacked kernel package.
type Kernel struct {
	Spec KernelSpec
	// Package is the image package, e.g. linux-image-6.1.0-37-cloud-amd64.
	Package string
	// Release is the kernel's uname -r, e.g. 6.1.0-37-cloud-amd64.
	Release string
	// Root is the directory the package was unpacked into.
	Root string
	// Vmlinuz is the bootable kernel image.
	Vmlinuz string
	// Modules is the package's /lib/modules/RELEASE directory, empty when
	// the package has none.
	Modules string
}

// Fetcher downloads kernel packages into a cache directory. The zero value
// uses DefaultCacheDir and logs nothing.
type Fetcher struct {
	// CacheDir holds the unpacked packages; empty means DefaultCacheDir().
	CacheDir string
	// Refresh re-resolves the newest package through apt even when an
	// earlier fetch of the same spec is cached.
	Refresh bool
	// Log receives progress lines and apt's stderr; nil discards them.
	Log io.Writer
}

// DefaultCacheDir is $XDG_CACHE_HOME/cryo/kernels, or
// ~/.cache/cryo/kernels when XDG_CACHE_HOME is unset.
func DefaultCacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("kernel cache: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "cryo", "kernels"), nil
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		fmt.Fprintf(f.Log, format+"\n", args...)
	}
}

// Fetch returns the unpacked kernel for spec, downloading it with
// apt-get download (nothing is installed on the host) and unpacking it with
// dpkg-deb -x unless the cache has it already.
func (f *Fetcher) Fetch(ctx context.Context, spec KernelSpec) (*Kernel, error) {
	cache := f.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", spec, err)
	}
	// The last package resolved for a spec is remembered so later runs
	// work offline and stay on the same kernel until Refresh.
	resolved := filepath.Join(cache, fmt.Sprintf("linux-%s-%s.package", spec.Version, spec.Flavour))
	pkg := spec.Package
	if pkg == "" && !f.Refresh {
		if b, err := os.ReadFile(resolved); err == nil {
			name := strings.TrimSpace(string(b))
			if _, err := os.Stat(filepath.Join(cache, name)); err == nil {
				pkg = name
			}
		}
	}

	var a *apt
	getApt := func() (*apt, error) {
		if a != nil {
			return a, nil
		}
		if spec.Source == nil {
			var err error
			a, err = systemApt(ctx, f.Log)
			return a, err
		}
		dir, err := os.MkdirTemp(cache, "apt-"+spec.Source.Name+"-")
		if err != nil {
			return nil, err
		}
		if a, err = privateApt(ctx, spec.Source, dir, f.Log); err != nil {
			os.RemoveAll(dir)
		}
		return a, err
	}
	defer func() {
		if a != nil && a.dir != "" {
			_ = os.RemoveAll(a.dir)
		}
	}()

	if pkg == "" {
		ap, err := getApt()
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", spec, err)
		}
		if pkg, err = resolvePackage(ctx, ap, spec); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", spec, err)
		}
		f.logf("kernel %s: resolved to %s", spec, pkg)
	}

	root := filepath.Join(cache, pkg)
	if _, err := os.Stat(root); err != nil {
		ap, err := getApt()
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", spec, err)
		}
		if err := downloadAndUnpack(ctx, ap, cache, pkg, f.logf); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", spec, err)
		}
	}
	k, err := inspectKernel(root)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: package %s: %w", spec, pkg, err)
	}
	k.Spec, k.Package = spec, pkg
	if !versionMatches(k.Release, spec.Version) {
		return nil, fmt.Errorf("kernel %s: package %s holds release %s", spec, pkg, k.Release)
	}
	if spec.Package == "" {
		if err := os.WriteFile(resolved, []byte(pkg+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", spec, err)
		}
	}
	return k, nil
}

// resolvePackage picks the image package for spec: the flavour's meta
// package dependency if it has the wanted version, otherwise the newest
// package of that version the archive lists.
func resolvePackage(ctx context.Context, a *apt, spec KernelSpec) (string, error) {
	meta := "linux-image-" + spec.Flavour
	out, err := a.run(ctx, "", "apt-cache", "show", "--no-all-versions", meta)
	if err == nil {
		dep := imageDependency(out)
		if v, ok := imagePackageVersion(dep, spec.Flavour); ok && versionMatches(v, spec.Version) {
			return dep, nil
		}
	}
	// The meta package is missing or points at another version.
	pattern := "^linux-image-" + regexp.QuoteMeta(spec.Version) + `[.+-].*-` + regexp.QuoteMeta(spec.Flavour) + "$"
	out, err = a.run(ctx, "", "apt-cache", "search", "--names-only", pattern)
	if err != nil {
		return "", err
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(line, " ")
		if _, ok := imagePackageVersion(name, spec.Flavour); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: nothing matches %s", ErrNoPackage, pattern)
	}
	return slices.MaxFunc(names, naturalCompare), nil
}

// imageDependency returns the first linux-image-* package in the Depends
// field of apt-cache show output.
func imageDependency(show []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(show))
	for sc.Scan() {
		deps, ok := strings.CutPrefix(sc.Text(), "Depends:")
		if !ok {
			continue
		}
		for dep := range strings.SplitSeq(deps, ",") {
			alt, _, _ := strings.Cut(dep, "|")
			name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			if strings.HasPrefix(name, "linux-image-") {
				return name
			}
		}
	}
	return ""
}

// imagePackageVersion returns the version part of a signed image package
// name (linux-image-VERSION-FLAVOUR), rejecting -dbg, -unsigned and meta
// packages.
func imagePackageVersion(pkg, flavour string) (string, bool) {
	v, ok := strings.CutPrefix(pkg, "linux-image-")
	if !ok {
		return "", false
	}
	v, ok = strings.CutSuffix(v, "-"+flavour)
	if !ok || v == "" || v[0] < '0' || v[0] > '9' {
		return "", false
	}
	return v, true
}

// versionMatches reports whether a kernel release or package version starts
// with major.minor as a whole (6.1 matches 6.1.0-37, not 6.12.1).
func versionMatches(release, majorMinor string) bool {
	rest, ok := strings.CutPrefix(release, majorMinor)
	return ok && (rest == "" || !isDigit(rest[0]))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// naturalCompare orders strings with embedded numbers by value, so that
// linux-image-6.1.0-10-cloud-amd64 sorts after linux-image-6.1.0-9-cloud-amd64.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, ra := splitDigits(a)
			nb, rb := splitDigits(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// downloadAndUnpack fetches pkg's .deb into a scratch directory of cache and
// unpacks it to cache/pkg, renaming only a complete tree into place.
func downloadAndUnpack(ctx context.Context, a *apt, cache, pkg string, logf func(string, ...any)) error {
	tmp, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logf("kernel: downloading %s", pkg)
	download := append(sandboxOpts(), "download", pkg)
	if _, err := a.run(ctx, tmp, "apt-get", download...); err != nil {
		if a.dir != "" {
			return fmt.Errorf("download %s: %w", pkg, err)
		}
		// The host's lists may be stale (a superseded .deb is gone from
		// the mirror): refresh them once and retry.
		if _, uerr := a.run(ctx, "", "apt-get", "update"); uerr != nil {
			return fmt.Errorf("download %s: %w (and apt-get update failed: %v)", pkg, err, uerr)
		}
		if _, err := a.run(ctx, tmp, "apt-get", download...); err != nil {
			return fmt.Errorf("download %s: %w", pkg, err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("download %s: expected one .deb, found %d", pkg, len(debs))
	}
	unpacked := filepath.Join(tmp, "root")
	logf("kernel: unpacking %s", filepath.Base(debs[0]))
	cmd := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], unpacked)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: dpkg-deb -x: %w: %s", filepath.Base(debs[0]), err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(unpacked, filepath.Join(cache, pkg)); err != nil {
		// A concurrent fetch of the same package may have won the race.
		if _, serr := os.Stat(filepath.Join(cache, pkg, "boot")); serr == nil {
			return nil
		}
		return fmt.Errorf("unpack %s: %w", pkg, err)
	}
	return nil
}

// inspectKernel finds the kernel image and modules in an unpacked package.
func inspectKernel(root string) (*Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("expected one boot/vmlinuz-* in %s, found %d", root, len(images))
	}
	k := &Kernel{Root: root, Vmlinuz: images[0]}
	k.Release = strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	// Newer packages ship modules under /usr/lib (merged /usr).
	for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
		m := filepath.Join(root, dir, k.Release)
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			k.Modules = m
			break
		}
	}
	return k, nil
}
