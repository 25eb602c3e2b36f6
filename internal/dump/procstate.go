package dump

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// membarrierGetRegistrations is MEMBARRIER_CMD_GET_REGISTRATIONS (Linux
// >= 6.3): the registration commands the caller's mm has issued.
const membarrierGetRegistrations = 1 << 9

// dumpProcState adds to tc the state of the process's mm, its OOM score
// adjustment and its audit login UID, and refuses what it cannot keep of
// them. membarrier
// is what the process said of its membarrier registrations.
func (d *dumper) dumpProcState(tc *pb.TaskCoreEntry, membarrier answer) error {
	if err := d.refuseLockFuture(); err != nil {
		return err
	}
	oom, err := proc.ReadOOMScoreAdj(d.view)
	if err != nil {
		return err
	}
	tc.OomScoreAdj = pb.Int32(oom)
	tc.Loginuid = d.loginUID
	switch err := membarrier.err; {
	case errors.Is(err, unix.EINVAL):
		// Nothing outside the process shows them on this kernel.
		d.log.Warn("this kernel cannot tell membarrier registrations (Linux < 6.3): a restore will not have them")
	case err != nil:
		return err
	default:
		tc.MembarrierRegistrationMask = pb.Uint32(uint32(membarrier.v))
	}
	return nil
}

// refuseLockFuture refuses a process that called mlockall(MCL_FUTURE):
// CRIU's images have no place for the flag its later mappings get. The
// scratch mapping, made by an injected mmap since the status was read
// after the freeze, shows it: it is locked, and adds to VmLck.
func (d *dumper) refuseLockFuture() error {
	if _, err := d.tr.Scratch(d.view); err != nil {
		return err
	}
	st, err := proc.ReadStatus(d.view)
	if err != nil {
		return err
	}
	if st.VmLck > d.status.VmLck {
		return fmt.Errorf("%w: mlockall(MCL_FUTURE): the process's new mappings are locked", ErrUnsupported)
	}
	return nil
}
