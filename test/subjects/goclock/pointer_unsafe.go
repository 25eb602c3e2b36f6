package main

import (
	"syscall"
	"unsafe"
)

func pointer(ts *syscall.Timespec) unsafe.Pointer { return unsafe.Pointer(ts) }
