package kernel

import "errors"

// ErrStructSize means the kernel read or wrote a struct of a size other
// than the one this package mirrors: the uapi header has changed.
var ErrStructSize = errors.New("kernel struct size differs from cryo's")

// ErrSeccompProgram means bytes are not a BPF program seccomp takes.
var ErrSeccompProgram = errors.New("not a seccomp BPF program")

// ErrNetlink means a netlink reply is not what the kernel writes: cut
// short, or with lengths that do not add up.
var ErrNetlink = errors.New("malformed netlink reply")
