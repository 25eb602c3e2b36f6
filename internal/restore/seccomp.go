package restore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// threadSeccomp is the seccomp state of one thread to restore.
type threadSeccomp struct {
	strict bool
	// filters are its filters, the oldest first, as installed.
	filters []*pb.SeccompFilter
}

// seccompFlags are the SECCOMP_FILTER_FLAG_* a filter may be restored
// with: what the kernel reports of a filter (LOG), and TSYNC, with which
// the dump marks the leader's filters when every thread had the same.
// Others would do more than restrict the thread: NEW_LISTENER, say, hands
// it a descriptor.
const seccompFlags = unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_TSYNC

// loadSeccomp reads the seccomp state of every thread: its core's mode
// and, in filter mode, its chain of filters in seccomp.img, which starts
// at the core's seccomp_filter, the oldest, and follows each filter's
// prev to the one installed after it (CRIU's layout, see dump).
func (c *checkpoint) loadSeccomp() error {
	c.seccomp = map[uint32]threadSeccomp{}
	var entry *pb.SeccompEntry
	leaderSyncs := false
	for i, tid := range c.threads {
		tc := c.cores[tid].ThreadCore
		switch tc.GetSeccompMode() {
		case pb.SeccompMode_disabled:
			continue
		case pb.SeccompMode_strict:
			c.seccomp[tid] = threadSeccomp{strict: true}
			continue
		case pb.SeccompMode_filter:
		default:
			return fmt.Errorf("%w: thread %d: seccomp mode %d", ErrUnsupported, tid, tc.GetSeccompMode())
		}
		if entry == nil {
			entry = &pb.SeccompEntry{}
			if err := c.dir.ReadImage(image.Seccomp, 0, entry); err != nil {
				return fmt.Errorf("%w: thread %d is in seccomp filter mode: %w", ErrImage, tid, err)
			}
		}
		if tc.SeccompFilter == nil {
			return imageErr("thread %d is in seccomp filter mode without a filter", tid)
		}
		all := entry.SeccompFilters
		var chain []*pb.SeccompFilter
		tsync := false
		for at := tc.GetSeccompFilter(); ; at = all[at].GetPrev() {
			// A thread has no more filters than the image: more is a loop.
			if int(at) >= len(all) || len(chain) == len(all) {
				return imageErr("seccomp.img: thread %d: filter %d of %d, after %d filters", tid, at, len(all), len(chain))
			}
			f := all[at]
			notifies, err := kernel.SeccompProgram(f.Filter)
			if err != nil {
				return fmt.Errorf("%w: seccomp.img: filter %d: %w", ErrImage, at, err)
			}
			if notifies {
				return fmt.Errorf("%w: seccomp.img: filter %d may hand system calls to a listener (SECCOMP_RET_USER_NOTIF)", ErrUnsupported, at)
			}
			if f.GetFlags()&^seccompFlags != 0 {
				return fmt.Errorf("%w: seccomp.img: filter %d has flags %#x", ErrUnsupported, at, f.GetFlags())
			}
			tsync = tsync || f.GetFlags()&unix.SECCOMP_FILTER_FLAG_TSYNC != 0
			chain = append(chain, f)
			if f.Prev == nil {
				break
			}
		}
		// Installed with TSYNC, the leader's filters become every
		// thread's, which must then have none of their own.
		if tsync && i != 0 {
			return imageErr("seccomp.img: thread %d, not the leader, has filters for every thread (SECCOMP_FILTER_FLAG_TSYNC)", tid)
		}
		leaderSyncs = leaderSyncs || tsync
		c.seccomp[tid] = threadSeccomp{filters: chain}
	}
	if leaderSyncs && len(c.seccomp) > 1 {
		return imageErr("seccomp.img: the leader's filters are every thread's (SECCOMP_FILTER_FLAG_TSYNC), but another thread has its own")
	}
	return nil
}

// restoreSeccomp puts each thread back under seccomp: strict mode, or its
// filters, the oldest first.
//
// The order matters three ways. A filter may fail or kill for the very
// calls cryo injects, and after strict mode only read, write, exit and
// sigreturn are left; so seccomp is suspended for the tracer first
// (PTRACE_O_SUSPEND_SECCOMP, until the process is let go), which lets
// everything that follows (credentials, dumpable, queued signals, the
// scratch mapping's munmap at resume) run whatever the filters say. A
// filter of a thread without no_new_privs can only be installed with
// CAP_SYS_ADMIN, which the thread has until its credentials are restored:
// so the filters go on before the credentials, never after, or the process
// that got its filters while privileged (or from a privileged parent)
// could not get them back. And before the credentials no thread has
// no_new_privs yet, so that SECCOMP_FILTER_FLAG_TSYNC, which gives it to
// the threads it syncs when the caller has it, gives it to none.
func (r *restorer) restoreSeccomp() error {
	if len(r.c.seccomp) == 0 {
		return nil
	}
	if err := r.tr.SuspendSeccomp(); err != nil {
		return err
	}
	// The leader first: its filters may be every thread's (TSYNC).
	for _, tid := range r.c.threads {
		st, ok := r.c.seccomp[tid]
		if !ok {
			continue
		}
		if st.strict {
			if _, err := r.tr.Syscall(int(tid), unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_STRICT, 0, 0, 0); err != nil {
				return fmt.Errorf("tid %d: set seccomp strict mode: %w", tid, err)
			}
			continue
		}
		for i, f := range st.filters {
			if err := r.installFilter(int(tid), f); err != nil {
				return fmt.Errorf("tid %d: install seccomp filter %d of %d: %w", tid, i+1, len(st.filters), err)
			}
		}
	}
	return nil
}

// installFilter installs filter f in thread tid with seccomp(2).
func (r *restorer) installFilter(tid int, f *pb.SeccompFilter) error {
	fprog := kernel.SockFprog{Len: uint16(len(f.Filter) / unix.SizeofSockFilter)}
	size := uint64(len(kernel.Encode(fprog)))
	return r.withBuffer(size+uint64(len(f.Filter)), func(addr uint64) error {
		fprog.Filter = addr + size
		if err := r.tr.WriteMem(addr, append(kernel.Encode(fprog), f.Filter...)); err != nil {
			return err
		}
		ret, err := r.tr.Syscall(tid, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uint64(f.GetFlags()), addr)
		if err != nil {
			return err
		}
		// With TSYNC, the thread that could not be synced.
		if ret != 0 {
			return fmt.Errorf("seccomp: thread %d cannot take the filter", ret)
		}
		return nil
	})
}

// withBuffer runs f with the address of n bytes of the process's memory
// it may write: the scratch buffer if they fit, else a mapping made for
// them, which goes after (a filter may be 32 KiB).
func (r *restorer) withBuffer(n uint64, f func(addr uint64) error) error {
	if n <= scratchSize {
		scratch, err := r.scratch()
		if err != nil {
			return err
		}
		return f(scratch)
	}
	used, err := r.takenRanges(r.pid)
	if err != nil {
		return err
	}
	size := (n + pageSize - 1) &^ (pageSize - 1)
	at, err := vdso.FindHole(used, size, taskSize/2, mmapMinAddr(), taskSize)
	if err != nil {
		return fmt.Errorf("place a %d-byte buffer: %w", n, err)
	}
	if err := r.sys(unix.SYS_MMAP, at, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0); err != nil {
		return fmt.Errorf("map a %d-byte buffer at %#x: %w", size, at, err)
	}
	err = f(at)
	if uerr := r.sys(unix.SYS_MUNMAP, at, size); uerr != nil && err == nil {
		err = fmt.Errorf("unmap the buffer at %#x: %w", at, uerr)
	}
	return err
}
