package dump

import (
	"errors"

	"github.com/cryo-cr/cryo/internal/files"
)

var (
	// ErrUnsupported means the target holds state cryo cannot checkpoint
	// yet; the message names it. It is the files package's own, which
	// refuses the descriptors it cannot keep.
	ErrUnsupported = files.ErrUnsupported
	// ErrNoProcess means there is no process of the pid to dump.
	ErrNoProcess = errors.New("no such process")
	// ErrInjected is the failure of a step that Options.FailAt names.
	ErrInjected = errors.New("injected failure")
)
