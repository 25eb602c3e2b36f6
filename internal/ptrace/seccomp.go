package ptrace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// SuspendSeccomp stops seccomp from applying to the traced threads until
// they are detached (PTRACE_O_SUSPEND_SECCOMP): neither strict mode nor a
// filter sees the system calls injected into them, which a filter could
// fail, or kill the process for. Threads Clone3 makes later get it too.
// The kernel allows it only to a tracer with CAP_SYS_ADMIN that is not
// under seccomp itself, on a kernel with CONFIG_CHECKPOINT_RESTORE.
func (t *Tracer) SuspendSeccomp() error {
	err := t.do(func() error {
		options := t.options | unix.PTRACE_O_SUSPEND_SECCOMP
		for _, tid := range t.threads {
			if err := setOptions(tid, options); err != nil {
				return err
			}
		}
		t.options = options
		return nil
	})
	if err != nil {
		return fmt.Errorf("suspend seccomp of pid %d: %w", t.pid, err)
	}
	return nil
}

// SeccompFilter is one seccomp filter of a thread.
type SeccompFilter struct {
	// Program is its BPF program, struct sock_filter instructions as the
	// kernel holds them.
	Program []byte
	// Flags are the SECCOMP_FILTER_FLAG_* it was installed with that the
	// kernel reports.
	Flags uint64
}

// SeccompFilters returns the seccomp filters of thread tid, the oldest
// first: the order to install them in.
func (t *Tracer) SeccompFilters(tid int) ([]SeccompFilter, error) {
	var out []SeccompFilter
	err := t.onThread(tid, func() error {
		for i := 0; ; i++ {
			prog, err := kernel.PtraceSeccompGetFilter(tid, i)
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			if err != nil {
				return err
			}
			md, err := kernel.PtraceSeccompGetMetadata(tid, i)
			if err != nil {
				return err
			}
			out = append(out, SeccompFilter{Program: prog, Flags: md.Flags})
		}
	})
	return out, err
}
