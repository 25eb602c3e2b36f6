package ptrace

import "errors"

var (
	// ErrDetached means the tracer has detached (or killed its tracee) and
	// takes no more requests.
	ErrDetached = errors.New("tracer detached")
	// ErrExited means a traced thread, or the whole process, has exited.
	ErrExited = errors.New("tracee exited")
	// ErrNotThread means a tid is not one of the traced process's threads.
	ErrNotThread = errors.New("not a traced thread")
	// ErrFault means injected code stopped with a signal of its own making
	// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, or SIGTRAP away from the gadget).
	ErrFault = errors.New("injected code faulted")
	// ErrNoBorrowSite means the tracee has no private executable mapping to
	// borrow for the first injection.
	ErrNoBorrowSite = errors.New("no private executable mapping")
)
