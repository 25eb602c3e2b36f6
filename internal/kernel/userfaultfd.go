package kernel

// UffdioAPI mirrors struct uffdio_api in include/uapi/linux/userfaultfd.h:
// the handshake every userfaultfd needs before any other ioctl.
type UffdioAPI struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

// Constants of include/uapi/linux/userfaultfd.h.
const (
	// UffdAPI is the only API version, UFFD_API.
	UffdAPI = 0xaa
	// UffdioAPIRequest is UFFDIO_API, _IOWR(UFFDIO, _UFFDIO_API,
	// struct uffdio_api).
	UffdioAPIRequest = 0xc018aa3f
)

// UffdioRange mirrors struct uffdio_range (include/uapi/linux/userfaultfd.h).
type UffdioRange struct {
	Start, Len uint64
}

// UffdioRegister mirrors struct uffdio_register.
type UffdioRegister struct {
	Range  UffdioRange
	Mode   uint64
	Ioctls uint64
}

// UffdioCopy mirrors struct uffdio_copy.
type UffdioCopy struct {
	Dst, Src, Len, Mode uint64
	Copy                int64 // bytes copied, or a negated errno
}

// More constants of include/uapi/linux/userfaultfd.h: the ioctls are
// _IOWR and _IOR on type 0xAA of the structs above.
const (
	UffdioRegisterRequest   = 0xc020aa00 // UFFDIO_REGISTER
	UffdioUnregisterRequest = 0x8010aa01 // UFFDIO_UNREGISTER
	UffdioCopyRequest       = 0xc028aa03 // UFFDIO_COPY
	// UffdRegisterModeMissing is UFFDIO_REGISTER_MODE_MISSING: the
	// range's missing pages are the userfaultfd's to fill.
	UffdRegisterModeMissing = 1
)
