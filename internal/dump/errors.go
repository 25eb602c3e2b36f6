package dump

import "errors"

var (
	// ErrUnsupported means the target holds state cryo cannot checkpoint
	// yet; the message names it.
	ErrUnsupported = errors.New("not supported")
	// ErrInjected is the failure of a step that Options.FailAt names.
	ErrInjected = errors.New("injected failure")
)
