// Package qemu owns the pieces needed to run code under another Linux kernel
// in qemu (TCG, no KVM needed): fetching Debian kernel packages into a local
// cache without installing them on the host, finding the modules a guest
// needs in them (and loading them, guest side), writing an initramfs (cpio
// "newc") around a static /init, booting it with a timeout while capturing
// the serial console, and framing results that a guest prints on that
// console so the host can extract them intact.
//
// It is test infrastructure: the vDSO fixture capture (capture-vdso) and the
// cross-kernel restore matrix build on it. Nothing here boots a VM unless
// asked; the unit tests never do.
package qemu
