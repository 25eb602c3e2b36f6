// Package kernel owns the raw kernel ABI that golang.org/x/sys/unix lacks:
// the uapi structs and constants cryo passes to the kernel, and thin
// wrappers of the calls that take them. Each type names the uapi header it
// mirrors; everything x/sys already provides is used from there instead.
//
// The structs are laid out exactly like their C counterparts (fixed-size
// fields, no padding), so that encoding/binary sizes them as the kernel
// does and their bytes can be written into a tracee as they are.
//
// Only the *_unsafe.go files import unsafe.
package kernel

// PageSize is the size of a page on x86_64, the architecture cryo runs on.
const PageSize = 4096

// MqueueMagic is the filesystem magic of POSIX message queues
// (MQUEUE_MAGIC, include/uapi/linux/magic.h), as statfs reports it.
const MqueueMagic = 0x19800202
