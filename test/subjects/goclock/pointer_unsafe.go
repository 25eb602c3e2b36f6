package main

import (
	"syscall"
	"unsafe"
)

func pointer(ts *syscall.Timespec) unsafe.Pointer { return unsafe.Pointer(ts) }

// nanotime is the runtime's CLOCK_MONOTONIC, which it reads through the
// vDSO entry it found at start-up: the pointer a restore must keep valid.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64
