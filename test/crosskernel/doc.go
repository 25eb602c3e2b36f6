// Package crosskernel restores processes on kernels other than the one they
// were dumped on: the Linux 5.10, 6.1 and 6.12 Debian cloud kernels booted
// under qemu (TCG) through package test/qemu, and the host's own kernel.
//
// The same job runner (runner.go) works on the host and, inside a guest, in
// the static /init built from ./guest: a job either starts a subject and
// dumps it, or restores an earlier dump, watches the restored process tick
// and optionally dumps it again (a hop of the chain). A dump and the
// subject's output file as it was at the dump make an artifact, which
// travels between host and guests: into a guest in a second cpio archive
// appended to the initramfs, out of it in a tar written onto a raw virtio
// disk. Every binary, output file and artifact lives under one root
// directory whose absolute path is the same on the host and in every guest,
// because a restore reopens files by path.
//
// The harness (harness.go) plans the jobs (plan.go), runs them in rounds of
// boots and renders the result as a matrix (matrix.go). The test
// (crosskernel_test.go) runs everything by default and a quick subset with
// CRYO_MATRIX=subset.
package crosskernel
