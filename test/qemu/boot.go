package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Boot defaults.
const (
	// DefaultAppend sends the console to the serial port, turns a panic
	// (init exiting) into an immediate reboot, which -no-reboot turns into
	// qemu exiting, and keeps kernel chatter off the console.
	// no_timer_check: under software emulation on a loaded host, the
	// IO-APIC timer check can miss its ticks and panic the guest (seen
	// with Linux 5.10: "IO-APIC + timer doesn't work!").
	DefaultAppend  = "console=ttyS0 panic=-1 quiet no_timer_check"
	DefaultMemory  = "512M"
	DefaultCPU     = "max"
	DefaultTimeout = 5 * time.Minute
)

// BootConfig describes one qemu boot.
type BootConfig struct {
	Kernel string // vmlinuz path
	Initrd string // initramfs path
	// Append is the kernel command line; empty means DefaultAppend.
	Append string
	// Memory is qemu's -m; empty means DefaultMemory.
	Memory string
	// CPU is qemu's -cpu model and features, e.g. "max,pku=off"; empty
	// means DefaultCPU.
	CPU string
	// Timeout bounds the whole boot; zero means DefaultTimeout.
	Timeout time.Duration
	// Extra are further qemu arguments.
	Extra []string
	// Console, if set, also receives the serial console as it arrives.
	Console io.Writer
	// Log receives the qemu command line and installation progress.
	Log io.Writer
}

// BootResult is what a finished boot left behind.
type BootResult struct {
	// Console is the serial console output (qemu's stdout).
	Console []byte
	// Stderr is qemu's own diagnostics.
	Stderr []byte
	// Elapsed is the wall time from starting qemu to its exit.
	Elapsed time.Duration
}

// Boot runs the kernel in qemu with TCG (no KVM needed), one CPU, no
// network and no display, and waits for the guest to power off, or to panic,
// which -no-reboot also ends. It returns the console output; on failure or
// timeout the error carries the console's tail.
func Boot(ctx context.Context, cfg BootConfig) (*BootResult, error) {
	name := filepath.Base(cfg.Kernel)
	if cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, fmt.Errorf("boot %s: kernel and initrd are required", name)
	}
	if cfg.Append == "" {
		cfg.Append = DefaultAppend
	}
	if cfg.Memory == "" {
		cfg.Memory = DefaultMemory
	}
	if cfg.CPU == "" {
		cfg.CPU = DefaultCPU
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	qemu, err := EnsureQEMU(ctx, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", name, err)
	}
	args := []string{
		"-accel", "tcg", "-cpu", cfg.CPU, "-smp", "1", "-m", cfg.Memory,
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", cfg.Append,
	}
	args = append(args, cfg.Extra...)

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	// Stdin stays /dev/null: -nographic would otherwise put a terminal in
	// raw mode and multiplex its monitor onto it.
	var console, stderr bytes.Buffer
	cmd.Stdout = &console
	if cfg.Console != nil {
		cmd.Stdout = io.MultiWriter(&console, cfg.Console)
	}
	cmd.Stderr = &stderr
	// After a kill, do not wait forever for pipes a child may hold.
	cmd.WaitDelay = 5 * time.Second
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, "boot: %s %s\n", qemu, strings.Join(args, " "))
	}
	start := time.Now()
	err = cmd.Run()
	res := &BootResult{Console: console.Bytes(), Stderr: stderr.Bytes(), Elapsed: time.Since(start)}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("boot %s: timed out after %v; console tail:\n%s", name, cfg.Timeout, tail(res.Console, 2000))
	case ctx.Err() != nil:
		return res, fmt.Errorf("boot %s: %w", name, ctx.Err())
	case err != nil:
		return res, fmt.Errorf("boot %s: qemu: %w: %s; console tail:\n%s", name, err, strings.TrimSpace(stderr.String()), tail(res.Console, 2000))
	}
	return res, nil
}

// tail returns at most the last n bytes of b as text.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
