//go:build !amd64

package ptrace

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// cryo traces and injects code on x86_64 only: elsewhere Seize and Spawn
// refuse before anything below could run.

// archErr is what Seize and Spawn answer on this architecture.
var archErr = fmt.Errorf("%w: cryo traces processes on x86_64 only, not %s", ErrArch, runtime.GOARCH)

const (
	pageSize    = kernel.PageSize
	scratchSize = 2*pageSize + batchSize
	maxArgs     = 6
	trapOffset  = 0
	fpRegset    = 0
	archOK      = false
)

var gadgetCode, batchCode []byte

func unreachable() { panic("ptrace: " + archErr.Error()) }

func trapStop(gadget uint64) stop  { unreachable(); return stop{} }
func faultStop(gadget uint64) stop { unreachable(); return stop{} }
func batchStop(code uint64) stop   { unreachable(); return stop{} }

func setBatch(r *unix.PtraceRegs, pc, entries uint64, n int) { unreachable() }
func batchLeft(r *unix.PtraceRegs) (entry, left uint64)      { unreachable(); return 0, 0 }

func (t *Tracer) reissueSleeps() error { unreachable(); return nil }

func setSyscall(r *unix.PtraceRegs, pc uint64, nr int, args []uint64) { unreachable() }
func setCall(r *unix.PtraceRegs, fn, sp uint64, args []uint64)        { unreachable() }
func result(r *unix.PtraceRegs) uint64                                { unreachable(); return 0 }
func pc(r *unix.PtraceRegs) uint64                                    { unreachable(); return 0 }

// RestartRegs returns r: no restart codes are known here.
func RestartRegs(r unix.PtraceRegs) unix.PtraceRegs { return r }

func returned(e unix.Errno) uint64 { return -uint64(e) }
