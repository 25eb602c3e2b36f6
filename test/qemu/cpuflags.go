package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// CPUFlags returns the CPUID feature names that -cpu MODEL,NAME=off
// accepts, as qemu's -cpu help lists them.
func CPUFlags(ctx context.Context, log io.Writer) (map[string]bool, error) {
	bin, err := EnsureQEMU(ctx, log)
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, "-cpu", "help").Output()
	if err != nil {
		return nil, fmt.Errorf("qemu -cpu help: %w", err)
	}
	flags := ParseCPUFlags(out)
	if len(flags) == 0 {
		return nil, fmt.Errorf("qemu -cpu help lists no CPUID flags")
	}
	return flags, nil
}

// ParseCPUFlags reads the names after "Recognized CPUID flags:" in
// qemu's -cpu help, up to the next heading or blank line.
func ParseCPUFlags(help []byte) map[string]bool {
	_, rest, ok := bytes.Cut(help, []byte("Recognized CPUID flags:"))
	if !ok {
		return nil
	}
	flags := map[string]bool{}
	for i, line := range strings.Split(string(rest), "\n") {
		if i > 0 && (strings.TrimSpace(line) == "" || !strings.HasPrefix(line, " ")) {
			break
		}
		for _, f := range strings.Fields(line) {
			flags[f] = true
		}
	}
	return flags
}
