package demo

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func timespecPtr(ts *unix.Timespec) unsafe.Pointer { return unsafe.Pointer(ts) }
