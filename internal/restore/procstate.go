package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// restoreProcState sets the process's OOM score adjustment and audit
// login UID, and repeats its membarrier registrations.
func (r *restorer) restoreProcState(tc *pb.TaskCoreEntry) error {
	if err := r.restoreOOMScoreAdj(tc); err != nil {
		return err
	}
	if err := r.restoreLoginUID(tc); err != nil {
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

// restoreLoginUID gives the process its audit login UID, in place of
// cryo's, which it inherited.
func (r *restorer) restoreLoginUID(tc *pb.TaskCoreEntry) error {
	if tc.Loginuid == nil {
		return nil
	}
	return r.setLoginUID(r.pid, tc.GetLoginuid())
}

// setLoginUID gives thread tid the audit login UID want. Only a thread
// may set its own, with CAP_AUDIT_CONTROL (which it still has: its
// credentials come later): it writes the number to
// /proc/thread-self/loginuid, an injected open and write. The kernel
// gives it a new audit session ID then, as to a login.
func (r *restorer) setLoginUID(tid int, want uint32) error {
	cur, err := proc.ReadLoginUID(tid)
	if errors.Is(err, fs.ErrNotExist) {
		if want == proc.LoginUIDUnset {
			return nil
		}
		return fmt.Errorf("%w: tid %d had the audit login UID %d, and this kernel has no audit support to give it back", ErrUnsupported, tid, want)
	}
	if err != nil || cur == want {
		return err
	}
	text := strconv.FormatUint(uint64(want), 10)
	fd, err := r.tr.OpenAt(tid, "/proc/thread-self/loginuid", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set loginuid %d of tid %d: open /proc/thread-self/loginuid: %w", want, tid, err)
	}
	addr, err := r.tr.WriteString(tid, text)
	if err == nil {
		var n uint64
		if n, err = r.tr.Syscall(tid, unix.SYS_WRITE, fd, addr, uint64(len(text))); err == nil && n != uint64(len(text)) {
			err = fmt.Errorf("wrote %d of %d bytes", n, len(text))
		}
	}
	if _, cerr := r.tr.Syscall(tid, unix.SYS_CLOSE, fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set loginuid %d of tid %d (it had %d from cryo): %w", want, tid, cur, err)
	}
	return nil
}
