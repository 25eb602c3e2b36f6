package kernel

// OLargefile is O_LARGEFILE as the kernel reports it in a file's status
// flags (arch/arm64/include/uapi/asm/fcntl.h); see fcntl_amd64.go.
const OLargefile = 0o400000
