package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestLimitMemory checks that GOGC is cryo's, and that the memory limit
// starts at the floor, rises with a live heap larger than it, so that the
// runtime does not collect back to back, and comes down to the floor once
// that heap is gone.
func TestLimitMemory(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	limitMemory()
	if got := debug.SetGCPercent(gcPercent); got != gcPercent {
		t.Fatalf("GOGC %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != memoryFloor {
		t.Fatalf("limit %d at the start, want the floor %d", got, memoryFloor)
	}
	const held = 64 << 20
	live := make([]byte, held)
	for i := range live {
		live[i] = 1
	}
	waitLimit(t, "with 64 MiB live", func(l int64) bool { return l >= held+held/2 })
	runtime.KeepAlive(live)
	live = nil
	waitLimit(t, "once they are let go", func(l int64) bool { return l == memoryFloor })
}

// waitLimit collects until the memory limit passes ok: the limit is set
// by a cleanup, which runs some time after the collection.
func waitLimit(t *testing.T, when string, ok func(int64) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		l := debug.SetMemoryLimit(-1)
		if ok(l) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory limit %d MiB %s", l>>20, when)
		}
	}
}
