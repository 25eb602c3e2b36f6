package kernel

// PageRegion mirrors struct page_region in include/uapi/linux/fs.h: a range
// of pages with the same categories, as PAGEMAP_SCAN reports them.
type PageRegion struct {
	Start, End uint64
	Categories uint64
}

// pmScanArg mirrors struct pm_scan_arg in include/uapi/linux/fs.h.
type pmScanArg struct {
	Size, Flags             uint64
	Start, End, WalkEnd     uint64
	Vec, VecLen, MaxPages   uint64
	CategoryInverted        uint64
	CategoryMask, AnyofMask uint64
	ReturnMask              uint64
}

// Constants of include/uapi/linux/fs.h.
const (
	// PageIsPresent is PAGE_IS_PRESENT, a page in memory.
	PageIsPresent = 1 << 3
	// PageIsSwapped is PAGE_IS_SWAPPED, a page swapped out.
	PageIsSwapped = 1 << 4
	// PageIsGuard is PAGE_IS_GUARD, a page of a guard region
	// (MADV_GUARD_INSTALL); PAGEMAP_SCAN knows it since Linux 6.15.
	PageIsGuard = 1 << 8
	// PagemapScanRequest is PAGEMAP_SCAN, _IOWR('f', 16, struct
	// pm_scan_arg), an ioctl of /proc/PID/pagemap (Linux >= 6.7).
	PagemapScanRequest = 0xc0606610
)
