package restore

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// restoreProcState sets the process's OOM score adjustment and repeats
// its membarrier registrations.
func (r *restorer) restoreProcState(tc *pb.TaskCoreEntry) error {
	if err := r.restoreOOMScoreAdj(tc); err != nil {
		return err
	}
	// Each bit of the mask is a registration command.
	for mask := tc.GetMembarrierRegistrationMask(); mask != 0; mask &= mask - 1 {
		cmd := uint64(1) << bits.TrailingZeros32(mask)
		if err := r.sys(unix.SYS_MEMBARRIER, cmd, 0, 0); err != nil {
			return fmt.Errorf("membarrier registration %#x: %w", cmd, err)
		}
	}
	return nil
}

// restoreOOMScoreAdj gives the process its OOM score adjustment. Without
// CAP_SYS_RESOURCE cryo can set no value below the lowest the process
// inherited from cryo: the restore fails then rather than leave the
// process more likely to be killed than it was.
func (r *restorer) restoreOOMScoreAdj(tc *pb.TaskCoreEntry) error {
	if tc.OomScoreAdj == nil {
		return nil
	}
	want := tc.GetOomScoreAdj()
	if want < proc.OOMScoreAdjMin || want > proc.OOMScoreAdjMax {
		return imageErr("oom_score_adj %d out of range", want)
	}
	cur, err := proc.ReadOOMScoreAdj(r.pid)
	if err != nil {
		return err
	}
	if cur == want {
		return nil
	}
	err = writeProcFile(proc.Path(r.pid, "oom_score_adj"), strconv.Itoa(int(want)))
	if errors.Is(err, unix.EACCES) {
		return fmt.Errorf("set oom_score_adj %d (the process has %d from cryo; lower needs CAP_SYS_RESOURCE): %w", want, cur, err)
	}
	if err != nil {
		return fmt.Errorf("set oom_score_adj %d: %w", want, err)
	}
	return nil
}
