package kernel

// PrctlMmMap mirrors struct prctl_mm_map in include/uapi/linux/prctl.h, the
// argument of prctl(PR_SET_MM, PR_SET_MM_MAP) that sets every mm_struct
// field a restored process needs in one call (PR_SET_MM_MAP_SIZE: 104).
type PrctlMmMap struct {
	StartCode  uint64
	EndCode    uint64
	StartData  uint64
	EndData    uint64
	StartBrk   uint64
	Brk        uint64
	StartStack uint64
	ArgStart   uint64
	ArgEnd     uint64
	EnvStart   uint64
	EnvEnd     uint64
	// Auxv is the address of AuxvSize bytes of auxiliary vector.
	Auxv     uint64
	AuxvSize uint32
	// ExeFD is a descriptor of the new /proc/PID/exe, or KeepExe.
	ExeFD uint32
}

// KeepExe as PrctlMmMap.ExeFD leaves /proc/PID/exe as it is.
const KeepExe = ^uint32(0)
