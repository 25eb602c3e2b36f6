// Package vdso owns everything cryo knows about the vDSO: parsing its ELF
// image the way a dynamic loader would, reading a process's live
// [vvar]/[vvar_vclock]/[vdso] layout, deciding whether a dumped vDSO can be
// replaced by the runtime one in place (remap) or needs a proxy, and
// encoding the trampolines and syscall stubs a proxy patches into the old
// code.
//
// Nothing here touches another process except the live reader in
// layout.go.
package vdso
