// Command guest is the /init of the cross-kernel guests: it sets up a
// minimal system (proc, sysfs, devtmpfs, a tmpfs /tmp), loads the virtio
// disk modules, moves its inputs into place, runs the jobs of
// /xk/scenario.json with the same runner the host uses, prints the results
// as a console frame, writes them with the artifacts it made as a tar onto
// the raw disk, and powers off. It is built static (CGO_ENABLED=0).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/test/crosskernel"
	"github.com/cryo-cr/cryo/test/qemu"
)

// inputs is where the host's second cpio archive puts everything:
// scenario.json, modules/ and root/, whose tree is moved to /.
const inputs = "/xk"

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "crosskernel guest: this is a qemu guest's /init; it runs as PID 1 only")
		os.Exit(2)
	}
	start := time.Now()
	if err := run(); err != nil {
		fmt.Printf("crosskernel-guest: error: %v\n", err)
	}
	fmt.Printf("crosskernel-guest: done in %v\n", time.Since(start).Round(time.Millisecond))
	unix.Sync()
	// Let the UART send everything before the power goes (tcdrain).
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1)
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Returning panics the kernel; panic=-1 and -no-reboot end qemu too.
	fmt.Printf("crosskernel-guest: power off: %v\n", err)
}

func run() error {
	if err := setup(); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(inputs, "scenario.json"))
	if err != nil {
		return err
	}
	var sc crosskernel.Scenario
	if err := json.Unmarshal(b, &sc); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	if err := qemu.LoadModules(sc.Modules); err != nil {
		return err
	}
	if err := hostLike(sc); err != nil {
		return err
	}
	if err := install(filepath.Join(inputs, "root")); err != nil {
		return fmt.Errorf("install inputs: %w", err)
	}
	r := &crosskernel.Runner{Root: sc.Root, Kernel: sc.Kernel, Release: crosskernel.Release(),
		Opts: sc.Opts, Guest: true, Log: os.Stdout}
	fmt.Printf("crosskernel-guest: kernel %s, %d jobs\n", r.Release, len(sc.Jobs))
	results := crosskernel.RunJobs(context.Background(), r, sc.Jobs)
	var made []string
	for i, j := range sc.Jobs {
		if results[i].OK && j.Into != "" {
			made = append(made, j.Into)
		}
	}
	rb, err := json.Marshal(results)
	if err != nil {
		return err
	}
	if err := qemu.WriteFrame(os.Stdout, crosskernel.ResultsFrame, rb); err != nil {
		return err
	}
	if sc.Disk == "" {
		return nil
	}
	return writeDisk(sc.Disk, sc.Root, results, made)
}

// setup mounts what the jobs need and makes this process the reaper of
// every orphan: restored processes are re-parented to it when cryo exits.
func setup() error {
	mounts := []struct{ fstype, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	// PID 1 adopts orphans anyway; say it, so the runner's reaping does
	// not depend on which PID it has.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// hostLike gives the programs started from now on (cryo, the subjects)
// the host's resource limits and capabilities: what a guest dumps must be
// restorable on the host, and a restore must not succeed here only because
// the guest's root may do more than the host's. The capabilities go from
// the bounding set, which bounds what root's programs get at exec.
func hostLike(sc crosskernel.Scenario) error {
	for r, l := range sc.Rlimits {
		// syscall's Setrlimit, so that the runtime does not give children
		// back the RLIMIT_NOFILE it found at start.
		if err := syscall.Setrlimit(r, &syscall.Rlimit{Cur: l.Cur, Max: l.Max}); err != nil {
			return fmt.Errorf("set limit %d to %d/%d: %w", r, l.Cur, l.Max, err)
		}
	}
	for c := 0; c < 64; c++ {
		if sc.CapBound&(1<<c) != 0 {
			continue
		}
		// The bounding set belongs to each thread, and any of this
		// program's threads may be the one that forks.
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, e)
		}
	}
	return nil
}

// install moves every file under src to the same path under /, freeing the
// initramfs copy as it goes (the tmpfs copy takes its place in memory).
func install(src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := filepath.Join("/", rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(dst, p, info.Mode().Perm()); err != nil {
			return err
		}
		// Every kernel of the matrix has the same files, as a package
		// deploys them, mtime included (0, as the host's): a restore
		// checks that the files a process had are the ones dumped.
		if err := os.Chtimes(dst, time.Unix(0, 0), time.Unix(0, 0)); err != nil {
			return err
		}
		return os.Remove(p)
	})
}

func copyFile(dst, src string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeDisk writes the output tar onto the raw disk, waiting for its device
// node: the driver probes asynchronously.
func writeDisk(disk, root string, results []crosskernel.Result, made []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(disk); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("output disk %s did not appear (virtio modules loaded: %s)", disk, loadedModules())
		}
		time.Sleep(50 * time.Millisecond)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = crosskernel.WriteOutputs(w, root, results, made)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write outputs to %s: %w", disk, err)
	}
	fmt.Printf("crosskernel-guest: wrote %d artifacts to %s\n", len(made), disk)
	return nil
}

func loadedModules() string {
	b, err := os.ReadFile("/proc/modules")
	if errors.Is(err, fs.ErrNotExist) {
		return "no /proc/modules"
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if n, _, ok := strings.Cut(l, " "); ok && strings.Contains(n, "virtio") {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}
