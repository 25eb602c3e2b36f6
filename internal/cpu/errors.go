package cpu

import "errors"

var (
	// ErrXState is wrapped by errors about an XSAVE area or an image's
	// FPU state that cannot be converted.
	ErrXState = errors.New("bad xstate")
	// ErrMissingFeatures means the image needs CPU state components this
	// CPU does not have.
	ErrMissingFeatures = errors.New("CPU lacks features the process uses")
	// ErrArch means the state is of an architecture this build of cryo
	// does not run.
	ErrArch = errors.New("architecture not supported")
)
