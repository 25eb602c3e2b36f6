package proc

import "errors"

// ErrSyntax is wrapped by every parse error: the text is not what the kernel
// writes.
var ErrSyntax = errors.New("malformed /proc text")
