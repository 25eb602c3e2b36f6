package files

import "errors"

var (
	// ErrUnsupported means a descriptor or an entry is of a kind, or in a
	// state, that cryo cannot checkpoint or restore yet; the message
	// names it.
	ErrUnsupported = errors.New("not supported")
	// ErrImage is wrapped by every error about file images that are
	// incomplete, corrupt or inconsistent.
	ErrImage = errors.New("bad checkpoint")
	// ErrLocked means a restore could not take a lock of the checkpoint
	// again: another process holds it; the message names it.
	ErrLocked = errors.New("lock held by another process")
	// ErrChanged means a file reached by its path is not the one dumped:
	// the message names it and what changed.
	ErrChanged = errors.New("changed since the dump")
	// ErrAccess means the process being restored could not open a file
	// itself and did not provably hold it: cryo will not open it for it.
	ErrAccess = errors.New("not the process's to open")
	// ErrInterface means a network interface a socket of the checkpoint
	// uses is missing on this machine, or has another name: the message
	// names it.
	ErrInterface = errors.New("network interface not as dumped")
)
