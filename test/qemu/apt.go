package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// AptSource is a Debian archive reached through a private apt configuration,
// so that suites the host is not configured for (bullseye, backports) can be
// used without touching /etc/apt or the host's package lists.
type AptSource struct {
	// Name labels the source in errors, e.g. "bullseye".
	Name string
	// Lines are sources.list one-line entries.
	Lines []string
}

// debianKeyring is the keyring that signs every Debian suite, bullseye
// included; it comes with debian-archive-keyring.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Debian sources used by the kernel specs.
var (
	Bullseye = &AptSource{Name: "bullseye", Lines: []string{
		"deb [signed-by=" + debianKeyring + "] http://deb.debian.org/debian bullseye main",
		"deb [signed-by=" + debianKeyring + "] http://deb.debian.org/debian bullseye-updates main",
		"deb [signed-by=" + debianKeyring + "] http://deb.debian.org/debian-security bullseye-security main",
	}}
	BookwormBackports = &AptSource{Name: "bookworm-backports", Lines: []string{
		"deb [signed-by=" + debianKeyring + "] http://deb.debian.org/debian bookworm-backports main",
	}}
)

// apt runs apt-get and apt-cache, either with the host's configuration
// (opts empty) or with a private one.
type apt struct {
	name string   // "system" or the AptSource name, for errors
	opts []string // -o options selecting a private configuration
	dir  string   // the private configuration's directory, "" for the host's
	log  io.Writer
}

// systemAptUpdate makes sure the host's package lists exist, once per process.
var systemAptUpdate struct {
	sync.Mutex
	done bool
}

// systemApt returns the host's apt, running apt-get update first if the host
// has no package lists at all (fresh containers ship without them).
func systemApt(ctx context.Context, log io.Writer) (*apt, error) {
	a := &apt{name: "system", log: log}
	systemAptUpdate.Lock()
	defer systemAptUpdate.Unlock()
	if systemAptUpdate.done {
		return a, nil
	}
	lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	if len(lists) == 0 {
		if _, err := a.run(ctx, "", "apt-get", "update"); err != nil {
			return nil, err
		}
	}
	systemAptUpdate.done = true
	return a, nil
}

// privateApt writes an apt configuration for src under dir (sources, state,
// lists and cache all inside dir) and downloads its package lists.
func privateApt(ctx context.Context, src *AptSource, dir string, log io.Writer) (*apt, error) {
	for _, d := range []string{"etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("apt %s: %w", src.Name, err)
		}
	}
	files := map[string]string{
		"etc/sources.list": strings.Join(src.Lines, "\n") + "\n",
		// An empty dpkg status: nothing is installed as far as this apt knows.
		"state/status": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("apt %s: %w", src.Name, err)
		}
	}
	j := func(p string) string { return filepath.Join(dir, p) }
	a := &apt{name: src.Name, log: log, dir: dir, opts: []string{
		"-o", "Dir::Etc::SourceList=" + j("etc/sources.list"),
		"-o", "Dir::Etc::SourceParts=" + j("etc/sources.list.d"),
		"-o", "Dir::Etc::Preferences=" + j("etc/preferences"),
		"-o", "Dir::Etc::PreferencesParts=" + j("etc/preferences.d"),
		"-o", "Dir::State=" + j("state"),
		"-o", "Dir::State::Lists=" + j("state/lists"),
		"-o", "Dir::State::status=" + j("state/status"),
		"-o", "Dir::Cache=" + j("cache"),
		"-o", "Dir::Cache::Archives=" + j("cache/archives"),
		// Only Packages indices are needed: no translations, no AppStream.
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
	}}
	a.opts = append(a.opts, sandboxOpts()...)
	if _, err := a.run(ctx, "", "apt-get", "update"); err != nil {
		return nil, err
	}
	return a, nil
}

// sandboxOpts keeps a root apt from dropping to the _apt user for
// downloads into directories (under root's home) that user cannot enter; apt
// would fall back with a warning anyway.
func sandboxOpts() []string {
	if os.Geteuid() == 0 {
		return []string{"-o", "APT::Sandbox::User=root"}
	}
	return nil
}

// run executes apt-get or apt-cache with the configuration options and
// returns stdout. stderr goes to the log and, on failure, into the error.
func (a *apt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	argv := append(append([]string{}, a.opts...), args...)
	cmd := exec.CommandContext(ctx, tool, argv...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if a.log != nil {
		fmt.Fprintf(a.log, "apt (%s): %s %s\n", a.name, tool, strings.Join(args, " "))
		cmd.Stderr = io.MultiWriter(&stderr, a.log)
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("apt (%s): %s %s: %w: %s", a.name, tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// qemuInstall serializes EnsureQEMU.
var qemuInstall sync.Mutex

// QEMUBinary is the emulator every boot uses.
const QEMUBinary = "qemu-system-x86_64"

// EnsureQEMU returns the path of qemu-system-x86_64, installing the Debian
// package qemu-system-x86 (without recommends) when it is missing. Installing
// needs root.
func EnsureQEMU(ctx context.Context, log io.Writer) (string, error) {
	qemuInstall.Lock()
	defer qemuInstall.Unlock()
	if p, err := exec.LookPath(QEMUBinary); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("qemu: %s not found and installing qemu-system-x86 needs root", QEMUBinary)
	}
	a, err := systemApt(ctx, log)
	if err != nil {
		return "", fmt.Errorf("qemu: install qemu-system-x86: %w", err)
	}
	install := func() error {
		_, err := a.run(ctx, "", "apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86")
		return err
	}
	if err := install(); err != nil {
		// Stale lists name .debs the mirror no longer has: refresh once.
		if _, uerr := a.run(ctx, "", "apt-get", "update"); uerr != nil {
			return "", fmt.Errorf("qemu: install qemu-system-x86: %w (and apt-get update failed: %v)", err, uerr)
		}
		if err := install(); err != nil {
			return "", fmt.Errorf("qemu: install qemu-system-x86: %w", err)
		}
	}
	p, err := exec.LookPath(QEMUBinary)
	if err != nil {
		return "", fmt.Errorf("qemu: qemu-system-x86 installed but %s still missing: %w", QEMUBinary, err)
	}
	return p, nil
}
