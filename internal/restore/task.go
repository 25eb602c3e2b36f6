package restore

import (
	"bytes"
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// restoreTask sets the process-wide state: signal actions, interval
// timers, limits and personality.
func (r *restorer) restoreTask() error {
	tc := r.c.cores[uint32(r.pid)].Tc
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	// The entries are for signals 1 to 64 without SIGKILL and SIGSTOP.
	sig := 0
	for _, sa := range tc.Sigactions {
		sig++
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			sig++
		}
		if sa.GetSigaction() == 0 && sa.GetFlags() == 0 && sa.GetMask() == 0 {
			continue // SIG_DFL, as a new process has it
		}
		if err := r.writeWords(scratch, sa.GetSigaction(), sa.GetFlags(), sa.GetRestorer(), sa.GetMask()); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_RT_SIGACTION, uint64(sig), scratch, 0, 8); err != nil {
			return fmt.Errorf("set action of signal %d: %w", sig, err)
		}
	}
	if t := tc.GetTimers(); t != nil {
		for which, it := range []interface {
			GetIsec() uint64
			GetIusec() uint64
			GetVsec() uint64
			GetVusec() uint64
		}{t.GetReal(), t.GetVirt(), t.GetProf()} {
			if it.GetVsec() == 0 && it.GetVusec() == 0 {
				continue // disarmed
			}
			if err := r.writeWords(scratch, it.GetIsec(), it.GetIusec(), it.GetVsec(), it.GetVusec()); err != nil {
				return err
			}
			if err := r.sys(unix.SYS_SETITIMER, uint64(which), scratch, 0); err != nil {
				return fmt.Errorf("set interval timer %d: %w", which, err)
			}
		}
	}
	if err := r.restoreLimits(tc, scratch); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_PERSONALITY, uint64(tc.GetPersonality())); err != nil {
		return fmt.Errorf("set personality %#x: %w", tc.GetPersonality(), err)
	}
	if tc.GetChildSubreaper() {
		if err := r.sys(unix.SYS_PRCTL, unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set child subreaper: %w", err)
		}
	}
	return nil
}

// restoreLimits sets the resource limits. A hard limit above this one's
// needs CAP_SYS_RESOURCE; without it the limit is kept as high as allowed,
// and the log says so.
func (r *restorer) restoreLimits(tc *criucore.TaskCoreEntry, scratch uint64) error {
	cur, err := proc.ReadLimits(r.pid)
	if err != nil {
		return err
	}
	for res, l := range tc.GetRlimits().GetRlimits() {
		if res >= len(cur) {
			break
		}
		soft, hard := l.GetCur(), l.GetMax()
		if soft == cur[res].Soft && hard == cur[res].Hard {
			continue
		}
		if err := r.writeWords(scratch, soft, hard); err != nil {
			return err
		}
		err := r.sys(unix.SYS_PRLIMIT64, 0, uint64(res), scratch, 0)
		if err == unix.EPERM && hard > cur[res].Hard {
			r.log.Warn("cannot raise a hard limit without CAP_SYS_RESOURCE; keeping this one's", "resource", res, "dumped", hard, "kept", cur[res].Hard)
			if err = r.writeWords(scratch, min(soft, cur[res].Hard), cur[res].Hard); err == nil {
				err = r.sys(unix.SYS_PRLIMIT64, 0, uint64(res), scratch, 0)
			}
		}
		if err != nil {
			return fmt.Errorf("set limit %d to %d/%d: %w", res, soft, hard, err)
		}
	}
	return nil
}

// restoreCreds sets the credentials, last since they may take away the
// right to do the rest. Only what differs from the stub's (cryo's) is set.
func (r *restorer) restoreCreds() error {
	cr := r.c.cores[uint32(r.pid)].ThreadCore.GetCreds()
	if cr == nil {
		return nil
	}
	st, err := proc.ReadStatus(r.pid)
	if err != nil {
		return err
	}
	same := st.Uid == [4]uint32{cr.GetUid(), cr.GetEuid(), cr.GetSuid(), cr.GetFsuid()} &&
		st.Gid == [4]uint32{cr.GetGid(), cr.GetEgid(), cr.GetSgid(), cr.GetFsgid()} &&
		bytes.Equal(u32s(st.Groups), u32s(cr.Groups))
	if same {
		return nil
	}
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	if err := r.tr.WriteMem(scratch, u32s(cr.Groups)); err != nil {
		return err
	}
	if err := r.sys(unix.SYS_SETGROUPS, uint64(len(cr.Groups)), scratch); err != nil {
		return fmt.Errorf("set groups: %w", err)
	}
	if err := r.sys(unix.SYS_SETRESGID, uint64(cr.GetGid()), uint64(cr.GetEgid()), uint64(cr.GetSgid())); err != nil {
		return fmt.Errorf("set gids: %w", err)
	}
	if err := r.sys(unix.SYS_SETRESUID, uint64(cr.GetUid()), uint64(cr.GetEuid()), uint64(cr.GetSuid())); err != nil {
		return fmt.Errorf("set uids: %w", err)
	}
	return nil
}

func u32s(v []uint32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, v)
	return b.Bytes()
}

// writeWords writes 64-bit words at addr in the process.
func (r *restorer) writeWords(addr uint64, words ...uint64) error {
	b := make([]byte, 0, 8*len(words))
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return r.tr.WriteMem(addr, b)
}

// writeString writes a NUL-terminated string at addr in the process.
func (r *restorer) writeString(addr uint64, s string) error {
	if len(s)+1 > scratchSize {
		return fmt.Errorf("path of %d bytes is too long", len(s))
	}
	return r.tr.WriteMem(addr, append([]byte(s), 0))
}

// open opens a file in the process and returns the descriptor.
func (r *restorer) open(path string, flags, mode uint64) (uint64, error) {
	scratch, err := r.scratch()
	if err != nil {
		return 0, err
	}
	if err := r.writeString(scratch, path); err != nil {
		return 0, err
	}
	return r.tr.Syscall(r.pid, unix.SYS_OPENAT, atFDCWD, scratch, flags, mode)
}

// sys injects a system call into the restored process's leader when only
// its success matters.
func (r *restorer) sys(nr int, args ...uint64) error {
	_, err := r.tr.Syscall(r.pid, nr, args...)
	return err
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = 1<<64 - 100

// scratchSize is how much of the scratch area the restore may use.
const scratchSize = ptrace.ScratchSize

// scratch returns the restored process's scratch buffer.
func (r *restorer) scratch() (uint64, error) { return r.tr.Scratch(r.pid) }

// scratchRange is where the scratch mapping is; the stub was given one
// outside every dumped VMA, and its child has the same.
func (r *restorer) scratchRange() vdso.Range {
	start, end, _ := r.tr.ScratchRange(r.pid)
	return vdso.Range{Start: start, End: end}
}
