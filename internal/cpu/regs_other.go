//go:build !amd64

package cpu

import (
	"fmt"
	"runtime"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"golang.org/x/sys/unix"
)

// RegsToImage has no x86_64 registers to convert here: cryo dumps on
// x86_64 only, and the tracer refuses to start elsewhere.
func RegsToImage(r *unix.PtraceRegs) *corex86.UserX86RegsEntry { return nil }

// RegsFromImage refuses: x86_64 registers cannot be restored on GOARCH.
func RegsFromImage(e *corex86.UserX86RegsEntry) (*unix.PtraceRegs, error) {
	return nil, fmt.Errorf("%w: x86_64 registers on %s", ErrArch, runtime.GOARCH)
}
