package dump

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// suspendSeccomp reads the seccomp mode of every frozen thread and, if one
// is under seccomp, suspends it for the tracer before anything is
// injected: the dump's injected calls (mmap, sigaltstack, prctl...) go
// through seccomp like the process's own, and a filter could fail them or
// kill the process, strict mode surely would. A dump that cannot suspend
// it fails here, the process untouched.
func (d *dumper) suspendSeccomp() error {
	d.seccomp = map[int]int{}
	for _, tid := range d.traced {
		// The view's status was read since the freeze.
		st := d.status
		if tid != d.view {
			var err error
			if st, err = proc.ReadTaskStatus(d.pid, tid); err != nil {
				return err
			}
		}
		if st.Seccomp != unix.SECCOMP_MODE_DISABLED {
			d.seccomp[tid] = st.Seccomp
		}
	}
	if len(d.seccomp) == 0 {
		return nil
	}
	d.log.Info("the process is under seccomp: suspended while cryo works on it", "modes", d.seccomp)
	if err := d.tr.SuspendSeccomp(); err != nil {
		return fmt.Errorf("the process is under seccomp, which cryo must suspend to inject its calls: %w", err)
	}
	return nil
}

// dumpSeccomp records each thread's seccomp mode in its core and the
// filters of those in filter mode in the tree's seccomp.img, as CRIU does:
// a thread's
// filters are consecutive entries, the newest first, each older one's prev
// naming the entry before it (the filter installed after it); the thread
// core's seccomp_filter names its oldest, the first to install. When every
// thread of the process has the same filters, only the leader's are
// written, each with
// SECCOMP_FILTER_FLAG_TSYNC, and the other threads' cores have no mode:
// installed with it the filters are shared again, so that a later
// SECCOMP_FILTER_FLAG_TSYNC of the process succeeds as it would have.
func (d *dumper) dumpSeccomp() error {
	if len(d.seccomp) == 0 {
		return nil
	}
	tids := d.tids()
	chains := make([][]ptrace.SeccompFilter, len(tids))
	for i, tid := range tids {
		mode := d.seccomp[tid]
		switch mode {
		case unix.SECCOMP_MODE_DISABLED:
			continue
		case unix.SECCOMP_MODE_STRICT:
		case unix.SECCOMP_MODE_FILTER:
			chain, err := d.seccompFilters(tid)
			if err != nil {
				return fmt.Errorf("tid %d: %w", tid, err)
			}
			chains[i] = chain
		default:
			return fmt.Errorf("%w: tid %d: seccomp mode %d", ErrUnsupported, tid, mode)
		}
		d.threads[i].ThreadCore.SeccompMode = pb.SeccompMode(mode).Enum()
	}
	shared := chains[0] != nil && !slices.ContainsFunc(chains[1:], func(c []ptrace.SeccompFilter) bool {
		return !slices.EqualFunc(c, chains[0], func(a, b ptrace.SeccompFilter) bool {
			return a.Flags == b.Flags && slices.Equal(a.Program, b.Program)
		})
	})
	var tsync uint32
	if shared {
		tsync = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	entry := &d.tree.seccomp
	for i, chain := range chains {
		tc := d.threads[i].ThreadCore
		if chain == nil {
			continue
		}
		if shared && i > 0 {
			tc.SeccompMode = nil
			continue
		}
		for j := len(chain) - 1; j >= 0; j-- {
			f := &pb.SeccompFilter{Filter: chain[j].Program, Flags: pb.Uint32(uint32(chain[j].Flags) | tsync)}
			if j < len(chain)-1 {
				f.Prev = pb.Uint32(uint32(len(entry.SeccompFilters) - 1))
			}
			entry.SeccompFilters = append(entry.SeccompFilters, f)
		}
		tc.SeccompFilter = pb.Uint32(uint32(len(entry.SeccompFilters) - 1))
	}
	return nil
}

// seccompFilters reads the filters of thread tid, the oldest first, and
// refuses what a restore could not install as it was: a filter that may
// hand calls to a listener, which is another process's descriptor, and
// flags the kernel reports that cryo does not know.
func (d *dumper) seccompFilters(tid int) ([]ptrace.SeccompFilter, error) {
	chain, err := d.tr.SeccompFilters(tid)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("seccomp filter mode without a filter")
	}
	for i, f := range chain {
		notifies, err := kernel.SeccompProgram(f.Program)
		if err != nil {
			return nil, fmt.Errorf("seccomp filter %d: %w", i, err)
		}
		if notifies {
			return nil, fmt.Errorf("%w: seccomp filter %d may hand system calls to a listener (SECCOMP_RET_USER_NOTIF, a filter installed with SECCOMP_FILTER_FLAG_NEW_LISTENER)", ErrUnsupported, i)
		}
		if f.Flags&^unix.SECCOMP_FILTER_FLAG_LOG != 0 {
			return nil, fmt.Errorf("%w: seccomp filter %d has flags %#x", ErrUnsupported, i, f.Flags)
		}
	}
	return chain, nil
}
