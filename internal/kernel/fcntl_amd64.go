package kernel

// OLargefile is O_LARGEFILE as the kernel reports it in a file's status
// flags (arch/x86/include/uapi/asm/fcntl.h, the generic value): every
// open() sets it on a 64-bit kernel, pipe() does not. x/sys's
// unix.O_LARGEFILE is 0 on 64-bit architectures, where callers need not
// pass it.
const OLargefile = 0o100000
