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
