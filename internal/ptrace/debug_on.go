//go:build cryodebug

package ptrace

// debugThreads turns on the tracer-thread checks (see thread.go).
const debugThreads = true
