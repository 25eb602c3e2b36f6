package ptrace

import "errors"

var (
	// ErrDetached means the tracer has detached (or killed its tracee) and
	// takes no more requests.
	ErrDetached = errors.New("tracer detached")
	// ErrExited means a traced thread, or the whole process, has exited.
	ErrExited = errors.New("tracee exited")
	// ErrNoStop means a thread did not stop for Seize in time: it sleeps
	// uninterruptibly (in vfork, on a stuck filesystem).
	ErrNoStop = errors.New("did not stop")
	// ErrNotThread means a tid is not one of the traced process's threads.
	ErrNotThread = errors.New("not a traced thread")
	// ErrFault means injected code stopped with a signal of its own making
	// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, or SIGTRAP away from the gadget).
	ErrFault = errors.New("injected code faulted")
	// ErrNoBorrowSite means the tracee has no private executable mapping to
	// borrow for the first injection.
	ErrNoBorrowSite = errors.New("no private executable mapping")
	// ErrNotChild means a pid is not a process born of an injection into
	// the tracee.
	ErrNotChild = errors.New("not a child of the tracee")
	// ErrVfork means an injection would vfork: the parent would wait in the
	// kernel for its stopped child, and the tracer with it.
	ErrVfork = errors.New("vfork is not followed")
	// ErrNotReaped means an injected wait4 did not reap the child asked
	// for.
	ErrNotReaped = errors.New("child not reaped")
	// ErrArch means cryo cannot trace processes on this architecture.
	ErrArch = errors.New("architecture not supported")
)
