//go:build !amd64

package kernel

import "strconv"

// sysNames is empty here: cryo injects system calls on x86_64 only.
var sysNames = map[int]string{}

// SyscallName says the number of system call nr.
func SyscallName(nr int) string { return "syscall " + strconv.Itoa(nr) }
