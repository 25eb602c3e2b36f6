//go:build !amd64

package cpu

import (
	"fmt"
	"runtime"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// RegsToImage has no x86_64 registers to convert here: cryo dumps on
// x86_64 only, and the tracer refuses to start elsewhere.
func RegsToImage(r *unix.PtraceRegs) *pb.UserX86RegsEntry { return nil }

// RegsFromImage refuses: x86_64 registers cannot be restored on GOARCH.
func RegsFromImage(e *pb.UserX86RegsEntry) (*unix.PtraceRegs, error) {
	return nil, fmt.Errorf("%w: x86_64 registers on %s", ErrArch, runtime.GOARCH)
}
