package restore

import "errors"

var (
	// ErrImage is wrapped by every error about an image directory that is
	// incomplete, corrupt, or inconsistent.
	ErrImage = errors.New("bad checkpoint")
	// ErrUnsupported means the checkpoint holds state this version cannot
	// restore.
	ErrUnsupported = errors.New("not supported")
	// ErrPidTaken means the dumped PID or a TID is in use.
	ErrPidTaken = errors.New("pid in use")
	// ErrInjected is the failure of a step that Options.FailAt names.
	ErrInjected = errors.New("injected failure")
)
