// Command goclock is a checkpoint/restore subject written in Go: several
// goroutines on several threads, timers, time.Now (through the vDSO) and
// crypto/rand (through the vDSO's getrandom on Linux >= 6.11).
//
// Every 20 ms it prints "tick N mono_ns=T pid=P ok", or "FAIL ..." and
// exits 1 when a check fails.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

const period = 20 * time.Millisecond

var start = time.Now()

func fail(format string, a ...any) {
	fmt.Printf("FAIL "+format+"\n", a...)
	os.Exit(1)
}

// monoNS reads CLOCK_MONOTONIC through the system call, bypassing the
// vDSO, to check the vDSO's answer against.
func monoNS() int64 {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(pointer(&ts)), 0); e != 0 {
		fail("clock_gettime syscall: %v", e)
	}
	return ts.Nano()
}

func main() {
	runtime.GOMAXPROCS(4)
	// Busy goroutines keep several threads alive and hold state of their
	// own that must survive.
	var sums [3]atomic.Uint64
	for i := range sums {
		go func() {
			runtime.LockOSThread()
			h := sha256.New()
			for n := uint64(0); ; n++ {
				fmt.Fprint(h, n)
				sums[i].Store(n)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// A heap pattern.
	pattern := make([]uint64, 1<<19)
	for i := range pattern {
		pattern[i] = uint64(i) * 0x9e3779b97f4a7c15
	}

	ticker := time.NewTicker(period)
	timer := time.NewTimer(time.Hour)
	var lastMono int64
	for tick := 0; ; tick++ {
		<-ticker.C
		a := monoNS()
		vdso := nanotime() // through the vDSO, checked against the system call
		now := time.Since(start)
		b := monoNS()
		if b < a || b-a > int64(time.Second) {
			fail("syscall monotonic clock jumped: %d then %d", a, b)
		}
		if vdso < a || vdso > b {
			fail("vDSO monotonic clock %d outside the system call's %d..%d", vdso, a, b)
		}
		if now <= 0 {
			fail("time.Since(start) = %v", now)
		}
		if wall := time.Now().Unix(); wall < 1700000000 {
			fail("time.Now() = %d", wall)
		}
		if a < lastMono {
			fail("monotonic clock went back: %d < %d", a, lastMono)
		}
		lastMono = a
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			fail("crypto/rand: %v", err)
		}
		for i := 0; i < len(pattern); i += 4099 {
			if pattern[i] != uint64(i)*0x9e3779b97f4a7c15 {
				fail("memory pattern at %d", i)
			}
		}
		if !timer.Stop() {
			fail("one-hour timer fired after %v", time.Since(start))
		}
		timer.Reset(time.Hour)
		// A short timer must fire on time.
		select {
		case <-time.After(time.Millisecond):
		case <-time.After(5 * time.Second):
			fail("1 ms timer did not fire within 5 s")
		}
		fmt.Printf("tick %d mono_ns=%d pid=%d ok\n", tick, a, os.Getpid())
	}
}
