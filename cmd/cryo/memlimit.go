package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// memoryFloor is the memory limit cryo gives the Go runtime while what
// it holds is small. By default the runtime lets the heap grow to twice
// what is live before it collects, and returns what it frees to the
// system lazily: a dump of 60,000 VMAs, holding 5 MB, peaked at 21 MiB,
// 17 under the limit; a restore of 10,000 descriptors at 21 MiB, 14-18
// under it.
const memoryFloor = 12 << 20

// gcPercent is cryo's GOGC: the heap grows by half what is live before
// the runtime collects, not by all of it, and to 2 MB, not 4, before the
// first collection. A restore of 1,000 threads then peaked at 11.6-12.1
// MiB, not 13.3-13.5, and one of 60,000 VMAs at 11.4-11.7, not 12.9-13.0,
// each taking 5-15% longer.
const gcPercent = 50

// limitMemory sets cryo's GOGC, unless GOGC sets one, and the memory
// limit, unless GOMEMLIMIT sets one. The limit is the floor until a
// collection finds more in use: then what is in use and half the live
// heap again, so that a large dump collects at most twice as often as the
// runtime's default has it, not back to back.
func limitMemory() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(memoryFloor)
	followLiveHeap()
}

// collected is an object that nothing keeps, whose cleanup tells that a
// collection ran; large enough not to share a block with other objects.
type collected struct{ _ [64]byte }

// followLiveHeap sets the limit after the next collection, and again
// after each one after it.
func followLiveHeap() {
	runtime.AddCleanup(new(collected), func(struct{}) {
		s := []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		}
		metrics.Read(s)
		live := s[0].Value.Uint64()
		// In use: the runtime's own memory, and the heap's spans that hold
		// objects (the live ones, just marked, and their leftovers).
		inUse := s[1].Value.Uint64() - s[2].Value.Uint64() - s[3].Value.Uint64()
		debug.SetMemoryLimit(int64(min(max(memoryFloor, inUse+live/2), math.MaxInt64)))
		followLiveHeap()
	}, struct{}{})
}
