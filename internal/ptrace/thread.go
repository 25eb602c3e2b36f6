package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// The tracer-thread contract. The functions whose doc comment ends with
// "Tracer thread only." make ptrace requests or wait for tracees: they
// must run on the tracer thread of the tracees they name, the session
// goroutine (Tracer.do, Tracer.onThread). The kernel answers a request
// from any other thread with ESRCH, which would read as a thread that
// has gone. The exported methods take care of it and may be called from
// any goroutine.
//
// Built with -tags cryodebug (make test runs this package so), every stop
// a tracee is waited for checks it: the thread waited for must be traced
// by the calling thread.

// assertTracer panics, in a cryodebug build, unless the calling thread is
// the tracer of tid, which has just stopped.
func assertTracer(tid int) {
	if !debugThreads {
		return
	}
	st, err := proc.ReadTaskStatus(tid, tid)
	if err != nil {
		return // gone: nothing to check
	}
	if self := unix.Gettid(); st.TracerPid != self {
		panic(fmt.Sprintf("ptrace: tid %d is traced by %d, but thread %d made the request: the tracer-thread contract is broken", tid, st.TracerPid, self))
	}
}
