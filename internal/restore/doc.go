// Package restore brings a checkpoint back to life: it reads and checks
// the image directory, starts a stub process traced from birth, gives it
// a time namespace, clones the restored process out of it with its old PID,
// rebuilds its address space, vDSO (remapped or proxied, see package vdso),
// files, threads and signal state by injecting system calls, and lets it
// run. Each child of a tree is cloned from its parent once the parent's
// memory is made, and keeps what the two shared copy-on-write (cow.go).
//
// A restore that fails kills everything it built and says which step
// failed.
package restore
