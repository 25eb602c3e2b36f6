package kernel

// InotifySetNextWd is INOTIFY_IOC_SETNEXTWD, _IOW('I', 0, __s32) in
// include/uapi/linux/inotify.h: the ioctl that sets the number the next
// watch of an inotify gets (Linux >= 4.18 built with
// CONFIG_CHECKPOINT_RESTORE).
const InotifySetNextWd = 0x40044900

// KernelDev encodes a device number as the kernel's internal dev_t
// (include/linux/kdev_t.h: 12 bits of major above 20 of minor), as
// fdinfo prints it and CRIU's images keep it: not as stat(2) returns it.
func KernelDev(major, minor uint32) uint32 { return major<<20 | minor&(1<<20-1) }

// KernelDevSplit is the major and minor of a kernel dev_t.
func KernelDevSplit(dev uint32) (major, minor uint32) { return dev >> 20, dev & (1<<20 - 1) }
