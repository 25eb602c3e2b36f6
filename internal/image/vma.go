package image

// VMA status bits (vma_entry.status), as CRIU defines them.
const (
	VMAAreaRegular  = 1 << 0 // dumped and restored
	VMAAreaStack    = 1 << 1
	VMAAreaVsyscall = 1 << 2
	VMAAreaVDSO     = 1 << 3 // [vdso]: its pages are always dumped
	VMAAreaHeap     = 1 << 5
	VMAFilePrivate  = 1 << 6
	VMAFileShared   = 1 << 7
	VMAAnonShared   = 1 << 8
	VMAAnonPrivate  = 1 << 9
	// VMAAreaSysvIPC marks a System V shared memory attachment (with
	// VMAAnonShared); its shmid is the segment's id.
	VMAAreaSysvIPC = 1 << 10
	VMAAreaVVAR    = 1 << 12 // [vvar] and [vvar_vclock]: never dumped
	// VMAAreaAIORing marks the ring of an AIO context (io_setup), alone,
	// as CRIU marks it: its pages are dumped, and the mm image's aios
	// entry for its address tells how to make it again.
	VMAAreaAIORing = 1 << 13
	VMAAreaMemfd   = 1 << 14
	// VMAAreaGuard marks an entry that is no VMA but a guard region
	// (madvise(MADV_GUARD_INSTALL)) inside one; such entries come after
	// every VMA.
	VMAAreaGuard = 1 << 16
	// VMAAreaIOUring marks a mapping of an io_uring instance's rings or
	// SQEs, alone (cryo's own: CRIU has no such status, and leaves bits
	// 18 to 26 unused; its 17 is VMA_AREA_UPROBES). Its shmid is the
	// ring's files.img entry, its pgoff the region's mmap offset; its
	// pages are not dumped (cryo-io-uring.img holds the ring's memory).
	VMAAreaIOUring = 1 << 20
)

// MapDroppable is the MAP_DROPPABLE mapping type (Linux >= 6.11), which
// vma_entry.flags holds in place of MAP_PRIVATE or MAP_SHARED.
const MapDroppable = 0x08
