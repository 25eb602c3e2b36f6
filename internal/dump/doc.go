// Package dump checkpoints a running process into a directory of
// CRIU-format images without injecting a parasite: it freezes every thread
// with ptrace, reads what /proc and ptrace show from outside, copies memory
// with process_vm_readv, duplicates file descriptors with pidfd_getfd, and
// injects a system call only for state the task alone can report
// (sigactions, interval and POSIX timers, sigaltstack, its clear_child_tid
// address).
//
// A dump that fails at any step, or is cancelled, puts back everything it
// touched and leaves the target running as before.
package dump
