package image

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// Kind is one kind of image file.
type Kind uint8

// The kinds a dump of one process writes. Pending signals, sigactions,
// interval and POSIX timers and rlimits have no kind of their own: current
// CRIU keeps them in the core image, and so do we.
const (
	Inventory    Kind = iota + 1 // inventory.img: format version, root ids
	Pstree                       // pstree.img: one entry per process
	Core                         // core-TID.img: registers and task state
	MM                           // mm-PID.img: mm fields, VMAs, auxv
	Pagemap                      // pagemap-PID.img: which pages-N.img bytes go where
	Pages                        // pages-N.img: raw page data, no header
	ShmemPagemap                 // pagemap-shmem-SHMID.img: which pages-N.img bytes a shared memory object holds
	Files                        // files.img: every open file object
	Fdinfo                       // fdinfo-N.img: descriptor table N (ids files_id)
	FS                           // fs-PID.img: cwd, root, umask
	IDs                          // ids-PID.img: kernel object and namespace ids
	Creds                        // creds-PID.img: uids, gids, capabilities
	PipesData                    // pipes-data.img: buffered pipe contents
	FifoData                     // fifo-data.img: buffered FIFO contents
	RemapFpath                   // remap-fpath.img: files reached through another path
	GhostFile                    // ghost-file-ID.img (hex ID): an unlinked file's contents
	Timens                       // timens-ID.img: time namespace clock offsets
	TTYInfo                      // tty-info.img: terminal state
	TTYData                      // tty-data.img: unread terminal input
	Seccomp                      // seccomp.img: seccomp filters
	UTSNS                        // utsns-ID.img: host and domain names
	Memfd                        // memfd.img: memfd inodes
	Cpuinfo                      // cpuinfo.img: the CPU the dump ran on
	FileLocks                    // filelocks.img: POSIX, OFD and flock locks
	IpcShm                       // ipcns-shm-ID.img: the System V shared memory segments of IPC namespace ID
	FileStats                    // cryo-file-stat.img: owner, mtime and inode of files reached by path (cryo's own)
	TCPStream                    // tcp-stream-INO.img (hex inode): a TCP connection's sequences, options and queues
	SkQueues                     // sk-queues.img: data queued in sockets
	IpcSem                       // ipcns-sem-ID.img: the System V semaphore sets of IPC namespace ID
	IpcMsg                       // ipcns-msg-ID.img: the System V message queues of IPC namespace ID
	SockExtras                   // cryo-sk-extra.img: socket state CRIU's entries lack (cryo's own)
	ThreadExtras                 // cryo-thread-extra.img: thread state CRIU's core entries lack (cryo's own)
	Cgroup                       // cgroup.img: the sets of cgroups processes are in
	IOUrings                     // cryo-io-uring.img: io_uring instances, their geometry, counters and ring memory (cryo's own)
)

// imgCommon is the first magic of every image but the inventory (whose
// format predates the two-magic header) and raw ones; the second is the
// kind's own. The values are CRIU's, checked against go-criu's table.
const imgCommon = 0x54564319

// The magics of cryo's own images, which only cryo writes; CRIU's magic.h
// has no such values.
const (
	cryoFileStatMagic    = 0x43525946
	cryoSockExtraMagic   = 0x4352534b
	cryoThreadExtraMagic = 0x43525458
	cryoIOUringMagic     = 0x43524955
)

// ImgVersion is the value InventoryEntry.img_version must hold: CRIU's
// CRTOOLS_IMAGES_V1_1, the format with the two-magic header.
const ImgVersion = 2

type kindDesc struct {
	name    string // file name stem, for messages
	pattern string // file name, with one verb for the id if per-object
	magic   uint32
	// msgs lists the protobuf messages (full names) the records may hold;
	// empty for raw images.
	msgs []string
}

var kinds = [...]kindDesc{
	Inventory:    {"inventory", "inventory.img", 0x58313116, names("inventory_entry")},
	Pstree:       {"pstree", "pstree.img", 0x50273030, names("pstree_entry")},
	Core:         {"core", "core-%d.img", 0x55053847, names("core_entry")},
	MM:           {"mm", "mm-%d.img", 0x57492820, names("mm_entry")},
	Pagemap:      {"pagemap", "pagemap-%d.img", 0x56084025, names("pagemap_head", "pagemap_entry")},
	Pages:        {"pages", "pages-%d.img", 0, nil},
	ShmemPagemap: {"pagemap-shmem", "pagemap-shmem-%d.img", 0x56084025, names("pagemap_head", "pagemap_entry")},
	Files:        {"files", "files.img", 0x56303138, names("file_entry")},
	Fdinfo:       {"fdinfo", "fdinfo-%d.img", 0x56213732, names("fdinfo_entry")},
	FS:           {"fs", "fs-%d.img", 0x51403912, names("fs_entry")},
	IDs:          {"ids", "ids-%d.img", 0x54432030, names("task_kobj_ids_entry")},
	Creds:        {"creds", "creds-%d.img", 0x54023547, names("creds_entry")},
	PipesData:    {"pipes-data", "pipes-data.img", 0x56453709, names("pipe_data_entry")},
	FifoData:     {"fifo-data", "fifo-data.img", 0x59333054, names("pipe_data_entry")},
	RemapFpath:   {"remap-fpath", "remap-fpath.img", 0x59133954, names("remap_file_path_entry")},
	GhostFile:    {"ghost-file", "ghost-file-%x.img", 0x52583605, names("ghost_file_entry", "ghost_chunk_entry")},
	Timens:       {"timens", "timens-%d.img", 0x43114433, names("timens_entry")},
	TTYInfo:      {"tty-info", "tty-info.img", 0x59453036, names("tty_info_entry")},
	TTYData:      {"tty-data", "tty-data.img", 0x59413026, names("tty_data_entry")},
	Seccomp:      {"seccomp", "seccomp.img", 0x64413049, names("seccomp_entry")},
	UTSNS:        {"utsns", "utsns-%d.img", 0x54473203, names("utsns_entry")},
	Memfd:        {"memfd", "memfd.img", 0x48453499, names("memfd_inode_entry")},
	Cpuinfo:      {"cpuinfo", "cpuinfo.img", 0x61404013, names("cpuinfo_entry")},
	FileLocks:    {"filelocks", "filelocks.img", 0x54323616, names("file_lock_entry")},
	// The segments' contents are in pagemap-shmem-SHMID.img (in_pagemaps).
	IpcShm: {"ipcns-shm", "ipcns-shm-%d.img", 0x46283044, names("ipc_shm_entry")},
	// Each set's values follow its entry, each queue's messages its
	// entry, each message's text its ipc_msg (payloadLen).
	IpcSem:    {"ipcns-sem", "ipcns-sem-%d.img", 0x59573019, names("ipc_sem_entry")},
	IpcMsg:    {"ipcns-msg", "ipcns-msg-%d.img", 0x55453737, names("ipc_msg_entry", "ipc_msg")},
	SkQueues:  {"sk-queues", "sk-queues.img", 0x56264026, names("sk_packet_entry")},
	TCPStream: {"tcp-stream", "tcp-stream-%x.img", 0x51465506, names("tcp_stream_entry")},
	Cgroup:    {"cgroup", "cgroup.img", 0x59383330, names("cgroup_entry")},
	// cryo's own kind: a magic CRIU does not use.
	FileStats:    {"cryo-file-stat", "cryo-file-stat.img", cryoFileStatMagic, names("cryo.file_stat_entry")},
	SockExtras:   {"cryo-sk-extra", "cryo-sk-extra.img", cryoSockExtraMagic, names("cryo.sk_extra_entry")},
	ThreadExtras: {"cryo-thread-extra", "cryo-thread-extra.img", cryoThreadExtraMagic, names("cryo.thread_extra_entry")},
	IOUrings:     {"cryo-io-uring", "cryo-io-uring.img", cryoIOUringMagic, names("cryo.io_uring_entry")},
}

func names(s ...string) []string { return s }

// desc panics on a Kind outside the table: that is a programming error.
func (k Kind) desc() *kindDesc {
	if k == 0 || int(k) >= len(kinds) {
		panic(fmt.Sprintf("image: invalid Kind %d", uint8(k)))
	}
	return &kinds[k]
}

// String returns the kind's file name stem, e.g. "mm" or "ghost-file".
func (k Kind) String() string {
	if k == 0 || int(k) >= len(kinds) {
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
	return kinds[k].name
}

// FileName returns the name of the kind's file for object id (a PID, TID,
// pages or files id, namespace id...). Kinds with one file per directory
// ignore id.
func (k Kind) FileName(id uint32) string {
	p := k.desc().pattern
	if !strings.Contains(p, "%") {
		return p
	}
	return fmt.Sprintf(p, id)
}

// raw reports whether the kind is bare data without header or records.
func (k Kind) raw() bool { return k.desc().magic == 0 }

// Own reports whether the kind is cryo's own, one CRIU's tools know
// nothing of.
func (k Kind) Own() bool {
	return k == FileStats || k == SockExtras || k == ThreadExtras || k == IOUrings
}

// header returns the magic words the kind's files start with.
func (k Kind) header() []uint32 {
	d := k.desc()
	switch {
	case d.magic == 0:
		return nil
	case k == Inventory:
		return []uint32{d.magic}
	default:
		return []uint32{imgCommon, d.magic}
	}
}

// holds reports whether a record of the kind may be message name.
func (k Kind) holds(name string) bool {
	return slices.Contains(k.desc().msgs, name)
}

// payloadLen returns how many raw bytes follow record m in its image: the
// contents a pipe data, socket packet or ghost chunk record announces, a
// TCP stream's receive then send queue or, after a ghost file record
// without chunks, the rest of the image (-1).
func payloadLen(m pb.Message) int64 {
	switch m := m.(type) {
	case *pb.PipeDataEntry:
		return int64(m.GetBytes())
	case *pb.TcpStreamEntry:
		return int64(m.GetInqLen()) + int64(m.GetOutqLen())
	case *pb.SkPacketEntry:
		return int64(m.GetLength())
	case *pb.IpcSemEntry:
		// u16 values, padded to 8 bytes.
		return (2*int64(m.GetNsems()) + 7) &^ 7
	case *pb.IpcMsg:
		// The text, padded to 8 bytes.
		return (int64(m.GetMsize()) + 7) &^ 7
	case *pb.GhostChunkEntry:
		return int64(min(m.GetLen(), math.MaxInt64))
	case *pb.GhostFileEntry:
		if !m.GetChunks() {
			return -1
		}
	}
	return 0
}
