package vdso

import "errors"

var (
	// ErrFormat is wrapped by every error about an image that is not a
	// usable vDSO: truncated, corrupt, or of an unsupported kind.
	ErrFormat = errors.New("bad vDSO image")
	// ErrNoVDSO means a process has no [vdso] mapping (booted with vdso=0).
	ErrNoVDSO = errors.New("no vDSO mapped")
	// ErrNoFit means a trampoline does not fit before the next symbol.
	ErrNoFit = errors.New("trampoline does not fit")
	// ErrNoMark means a vDSO carries no proxy mark.
	ErrNoMark = errors.New("no proxy mark")
	// ErrNoHole means no free range of the requested size exists.
	ErrNoHole = errors.New("no free address range")
)
