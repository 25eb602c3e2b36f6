package image

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// record is one record of a sample image and the raw bytes after it.
type record struct {
	msg     pb.Message
	payload []byte
}

// sample is a representative image of one kind.
type sample struct {
	kind Kind
	id   uint32
	recs []record
	// crit is what `crit decode --pretty` must show: a JSON value whose
	// every member must appear, equal, in crit's output; empty for cryo's
	// own kinds, which crit cannot decode.
	crit string
}

func recs(msgs ...pb.Message) []record {
	r := make([]record, len(msgs))
	for i, m := range msgs {
		r[i] = record{msg: complete(m)}
	}
	return r
}

// complete sets every unset required field of m, recursively, to its
// default, so that samples need only spell out the fields they check.
func complete(m pb.Message) pb.Message {
	pb.Complete(m)
	return m
}

var (
	u32 = pb.Uint32
	u64 = pb.Uint64
	str = pb.String
)

// samples returns one representative image of every kind with records.
func samples() []sample {
	ids := &pb.TaskKobjIdsEntry{
		VmId: 1, FilesId: 2, FsId: 3, SighandId: 4,
		PidNsId: u32(5), NetNsId: u32(6), MntNsId: u32(7), TimeNsId: u32(8),
	}
	return []sample{
		{kind: Inventory, recs: recs(&pb.InventoryEntry{
			ImgVersion: ImgVersion, FdinfoPerId: pb.Bool(true),
			RootIds: pb.Clone(ids), Lsmtype: pb.Lsmtype_NO_LSM.Enum(),
			DumpUptime: u64(123456789),
		}), crit: `{"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": true,
			"root_ids": {"vm_id": 1, "files_id": 2, "time_ns_id": 8}, "lsmtype": "NO_LSM", "dump_uptime": 123456789}]}`},
		{kind: Pstree, recs: recs(&pb.PstreeEntry{
			Pid: 4242, Ppid: 0, Pgid: 4242, Sid: 4000, Threads: []uint32{4242, 4243},
		}), crit: `{"magic": "PSTREE", "entries": [{"pid": 4242, "ppid": 0, "pgid": 4242, "sid": 4000, "threads": [4242, 4243]}]}`},
		{kind: Core, id: 4242, recs: recs(&pb.CoreEntry{
			Mtype: pb.CoreEntry_X86_64,
			ThreadInfo: &pb.ThreadInfoX86{
				ClearTidAddr: 0x7f0012345678,
				Gpregs: &pb.UserX86RegsEntry{
					Ip: 0x401000, Sp: 0x7ffc0000f000, Ax: 0xfffffffffffffdfc,
					OrigAx: 230, Mode: pb.UserX86RegsMode_NATIVE.Enum(),
				},
				Fpregs: &pb.UserX86FpregsEntry{Mxcsr: 0x1f80},
			},
			Tc: &pb.TaskCoreEntry{
				TaskState: 1, Comm: "sleep", BlkSigset: 1 << 13,
				Sigactions: []*pb.SaEntry{{Sigaction: 0x401234, Flags: 0x4000000}},
			},
			ThreadCore: &pb.ThreadCoreEntry{FutexRla: 0x7f0000001000, FutexRlaLen: 24},
		}), crit: `{"magic": "CORE", "entries": [{"mtype": "X86_64",
			"thread_info": {"clear_tid_addr": "0x7f0012345678", "gpregs": {"ip": "0x401000", "sp": "0x7ffc0000f000",
				"ax": "0xfffffffffffffdfc", "orig_ax": "0xe6", "mode": "NATIVE"}, "fpregs": {"mxcsr": 8064}},
			"tc": {"task_state": "Alive", "comm": "sleep", "blk_sigset": "0x2000",
				"sigactions": [{"sigaction": "0x401234", "flags": "0x4000000"}]},
			"thread_core": {"futex_rla": 139637976731648, "futex_rla_len": 24}}]}`},
		{kind: MM, id: 4242, recs: recs(&pb.MmEntry{
			MmStartCode: 0x400000, MmEndCode: 0x401000, MmStartStack: 0x7ffc0000f000,
			ExeFileId: 9, MmSavedAuxv: []uint64{33, 0x7ffc00100000, 0, 0},
			Vmas: []*pb.VmaEntry{{
				Start: 0x400000, End: 0x401000, Prot: 5, Flags: 2,
				Status: 1 | 1<<6, Shmid: 9, Fd: -1,
			}, {
				Start: 0x7f0000000000, End: 0x7f0000004000, Prot: 3, Flags: 0x22,
				Status: 1 | 1<<9, Fd: -1,
			}, {
				Start: 0x7f0000010000, End: 0x7f0000013000, Prot: 1, Flags: 0x21,
				Status: 1 | 1<<8 | 1<<10, Shmid: 12345, Fd: -1, Fdflags: u32(0),
			}, {
				Start: 0x7f0000020000, End: 0x7f0000021000, Prot: 3, Flags: 1,
				Status: 1 << 13, Fd: -1,
			}, {
				Start: 0xffffffffff600000, End: 0xffffffffff601000, Prot: 4, Flags: 0x22,
				Status: 1 | 1<<2, Fd: -1,
			}},
			Aios: []*pb.AioRingEntry{{Id: 0x7f0000020000, NrReq: 62, RingLen: 4096}},
		}), crit: `{"magic": "MM", "entries": [{"mm_start_code": "0x400000", "mm_end_code": "0x401000",
			"exe_file_id": 9, "mm_saved_auxv": [33, 140720309534720, 0, 0],
			"vmas": [{"start": "0x400000", "end": "0x401000", "shmid": 9, "prot": "PROT_READ | PROT_EXEC",
				"flags": "MAP_PRIVATE", "status": "VMA_AREA_REGULAR | VMA_FILE_PRIVATE", "fd": -1},
				{"start": "0x7f0000000000", "end": "0x7f0000004000", "prot": "PROT_READ | PROT_WRITE",
				"flags": "MAP_PRIVATE | MAP_ANON", "status": "VMA_AREA_REGULAR | VMA_ANON_PRIVATE"},
				{"start": "0x7f0000010000", "end": "0x7f0000013000", "shmid": 12345, "prot": "PROT_READ",
				"flags": "MAP_SHARED | MAP_ANON", "status": "VMA_AREA_REGULAR | VMA_ANON_SHARED | VMA_AREA_SYSVIPC", "fdflags": "0x0"},
				{"start": "0x7f0000020000", "end": "0x7f0000021000", "prot": "PROT_READ | PROT_WRITE",
				"flags": "MAP_SHARED", "status": "VMA_AREA_AIORING"},
				{"start": "0xffffffffff600000", "prot": "PROT_EXEC", "status": "VMA_AREA_REGULAR | VMA_AREA_VSYSCALL"}],
			"aios": [{"id": 139637976858624, "nr_req": 62, "ring_len": 4096}]}]}`},
		{kind: Pagemap, id: 4242, recs: recs(
			&pb.PagemapHead{PagesId: 1},
			&pb.PagemapEntry{Vaddr: 0x7f0000000000, CompatNrPages: 2, NrPages: u64(2), Flags: u32(PEPresent)},
		), crit: `{"magic": "PAGEMAP", "entries": [{"pages_id": 1},
			{"vaddr": "0x7f0000000000", "nr_pages": 2, "flags": "PE_PRESENT"}]}`},
		{kind: ShmemPagemap, id: 31337, recs: recs(
			&pb.PagemapHead{PagesId: 2},
			&pb.PagemapEntry{Vaddr: 0, CompatNrPages: 3, NrPages: u64(3), Flags: u32(PEPresent)},
		), crit: `{"magic": "PAGEMAP", "entries": [{"pages_id": 2},
			{"vaddr": "0x0", "nr_pages": 3, "flags": "PE_PRESENT"}]}`},
		{kind: Files, recs: recs(&pb.FileEntry{
			Type: pb.FdTypes_REG, Id: 9,
			Entry: &pb.RegFileEntry{Id: 9, Flags: 0o100000, Pos: 77, Name: "/usr/bin/sleep",
				Fown: &pb.FownEntry{}, Size: u64(35336)},
		}), crit: `{"magic": "FILES", "entries": [{"type": "REG", "id": 9,
			"reg": {"id": 9, "flags": "O_LARGEFILE", "pos": 77, "name": "/usr/bin/sleep", "size": 35336}}]}`},
		{kind: Files, id: 0, recs: recs(&pb.FileEntry{
			Type: pb.FdTypes_UNIXSK, Id: 5,
			Entry: &pb.UnixSkEntry{Id: 5, Ino: 7001, Type: 1, State: 10, Flags: 0o4002, Uflags: 0,
				Backlog: 16, Peer: 0, Fown: &pb.FownEntry{}, Name: []byte("/run/x.sock\x00"),
				Opts: &pb.SkOptsEntry{SoSndbuf: 212992, SoRcvbuf: 212992, SoSndTmoSec: 0, SoSndTmoUsec: 0,
					SoRcvTmoSec: 0, SoRcvTmoUsec: 0, SoPasscred: pb.Bool(true)},
				Shutdown:  pb.SkShutdown_WRITE.Enum(),
				FilePerms: &pb.FilePermsEntry{Mode: 0o140755, Uid: 1000, Gid: 1000},
			},
		}), crit: `{"magic": "FILES", "entries": [{"type": "UNIXSK", "id": 5,
			"usk": {"id": 5, "ino": 7001, "backlog": 16, "peer": 0, "shutdown": "WRITE",
				"opts": {"so_sndbuf": 212992, "so_passcred": true},
				"file_perms": {"mode": 49645, "uid": 1000, "gid": 1000}}}]}`},
		{kind: Files, id: 0, recs: recs(&pb.FileEntry{
			Type: pb.FdTypes_INETSK, Id: 6,
			Entry: &pb.InetSkEntry{Id: 6, Ino: 7002, Family: 10, Type: 1, Proto: 6, State: 10,
				SrcPort: 8080, DstPort: 0, Flags: 0o4002, Backlog: 511,
				SrcAddr: []uint32{0, 0, 0, 0x01000000}, DstAddr: []uint32{0, 0, 0, 0}, Fown: &pb.FownEntry{},
				Opts: &pb.SkOptsEntry{SoSndbuf: 16384, SoRcvbuf: 131072, SoSndTmoSec: 0, SoSndTmoUsec: 0,
					SoRcvTmoSec: 0, SoRcvTmoUsec: 0, Reuseaddr: pb.Bool(true)},
				V6Only: pb.Bool(true),
				// Debian's crit (CRIU 3.17) predates tcp_opts: it reads
				// the entry without them.
				TcpOpts: &pb.TcpOptsEntry{Nodelay: pb.Bool(true), Keepidle: u32(77)},
			},
		}, &pb.FileEntry{
			Type: pb.FdTypes_NETLINKSK, Id: 7,
			Entry: &pb.NetlinkSkEntry{Id: 7, Ino: 7003, Protocol: 0, State: 0, Flags: 2, Portid: 4242,
				Groups: []uint32{0x11, 1}, DstPortid: 0, DstGroup: 0, Fown: &pb.FownEntry{},
				Opts: &pb.SkOptsEntry{SoSndbuf: 212992, SoRcvbuf: 212992, SoSndTmoSec: 0, SoSndTmoUsec: 0,
					SoRcvTmoSec: 0, SoRcvTmoUsec: 0}},
		}), crit: `{"magic": "FILES", "entries": [{"type": "INETSK", "id": 6,
			"isk": {"id": 6, "ino": 7002, "family": "INET6", "type": "STREAM", "proto": "TCP", "state": "LISTEN",
				"src_port": 8080, "backlog": 511, "src_addr": ["::1"], "v6only": true,
				"opts": {"so_sndbuf": 16384, "reuseaddr": true}}},
			{"type": "NETLINKSK", "id": 7, "nlsk": {"id": 7, "ino": 7003, "portid": 4242, "groups": [17, 1]}}]}`},
		{kind: Fdinfo, id: 2, recs: recs(
			&pb.FdinfoEntry{Id: 9, Flags: 1, Type: pb.FdTypes_REG, Fd: 3},
			&pb.FdinfoEntry{Id: 10, Type: pb.FdTypes_PIPE, Fd: 4},
		), crit: `{"magic": "FDINFO", "entries": [{"id": 9, "flags": 1, "type": "REG", "fd": 3},
			{"id": 10, "type": "PIPE", "fd": 4}]}`},
		{kind: FS, id: 4242, recs: recs(&pb.FsEntry{CwdId: 11, RootId: 12, Umask: u32(0o22)}),
			crit: `{"magic": "FS", "entries": [{"cwd_id": 11, "root_id": 12, "umask": 18}]}`},
		{kind: IDs, id: 4242, recs: recs(pb.Clone(ids)),
			crit: `{"magic": "IDS", "entries": [{"vm_id": 1, "files_id": 2, "fs_id": 3, "sighand_id": 4,
				"pid_ns_id": 5, "net_ns_id": 6, "mnt_ns_id": 7, "time_ns_id": 8}]}`},
		{kind: Creds, id: 4242, recs: recs(&pb.CredsEntry{
			Uid: 1000, Gid: 1001, Euid: 1000, Egid: 1001,
			CapEff: []uint32{0, 0}, CapBnd: []uint32{0xffffffff, 0x1ff}, Secbits: 0,
			Groups: []uint32{27, 100},
		}), crit: `{"magic": "CREDS", "entries": [{"uid": 1000, "gid": 1001, "euid": 1000,
			"cap_bnd": [4294967295, 511], "groups": [27, 100]}]}`},
		{kind: PipesData, recs: []record{
			{complete(&pb.PipeDataEntry{PipeId: 10, Bytes: 5, Size: u32(65536)}), []byte("hello")},
			{complete(&pb.PipeDataEntry{PipeId: 11, Bytes: 3}), []byte("abc")},
		}, crit: `{"magic": "PIPES_DATA", "entries": [{"pipe_id": 10, "bytes": 5, "size": 65536, "extra": "aGVsbG8=\n"},
			{"pipe_id": 11, "bytes": 3, "extra": "YWJj\n"}]}`},
		{kind: FifoData, recs: []record{
			{complete(&pb.PipeDataEntry{PipeId: 12, Bytes: 4}), []byte("fifo")},
		}, crit: `{"magic": "FIFO_DATA", "entries": [{"pipe_id": 12, "bytes": 4, "extra": "Zmlmbw==\n"}]}`},
		{kind: SkQueues, recs: []record{
			{complete(&pb.SkPacketEntry{IdFor: 5, Length: 5}), []byte("hello")},
			{complete(&pb.SkPacketEntry{IdFor: 6, Length: 0}), []byte{}},
		}, crit: `{"magic": "SK_QUEUES", "entries": [{"id_for": 5, "length": 5, "extra": "aGVsbG8=\n"},
			{"id_for": 6, "length": 0}]}`},
		{kind: RemapFpath, recs: recs(&pb.RemapFilePathEntry{
			OrigId: 9, RemapId: 0x10, RemapType: pb.RemapType_GHOST.Enum(),
		}), crit: `{"magic": "REMAP_FPATH", "entries": [{"orig_id": 9, "remap_id": 16, "remap_type": "GHOST"}]}`},
		{kind: GhostFile, id: 0x10, recs: []record{
			{complete(&pb.GhostFileEntry{Uid: 1000, Gid: 1000, Mode: 0o100600,
				Chunks: pb.Bool(true), Size: u64(8192)}), nil},
			{complete(&pb.GhostChunkEntry{Len: 5, Off: 4096}), []byte("ghost")},
		}, crit: `{"magic": "GHOST_FILE", "entries": [{"uid": 1000, "gid": 1000, "mode": 33152, "chunks": true, "size": 8192},
			{"len": 5, "off": 4096, "extra": "Z2hvc3Q=\n"}]}`},
		{kind: Timens, id: 8, recs: recs(&pb.TimensEntry{
			Monotonic: &pb.Timespec{TvSec: 100, TvNsec: 5},
			Boottime:  &pb.Timespec{TvSec: 200, TvNsec: 6},
		}), crit: `{"magic": "TIMENS", "entries": [{"monotonic": {"tv_sec": 100, "tv_nsec": 5},
			"boottime": {"tv_sec": 200, "tv_nsec": 6}}]}`},
		{kind: TTYInfo, recs: recs(&pb.TtyInfoEntry{
			Id: 13, Type: pb.TtyType_PTY, Sid: 4000, Pgrp: 4242, Rdev: 0x8803,
			Pty:     &pb.TtyPtyEntry{Index: 3},
			Winsize: &pb.WinsizeEntry{WsRow: 24, WsCol: 80},
		}), crit: `{"magic": "TTY_INFO", "entries": [{"id": 13, "type": "PTY", "sid": 4000, "pgrp": 4242,
			"rdev": 34819, "pty": {"index": 3}, "winsize": {"ws_row": 24, "ws_col": 80}}]}`},
		{kind: TTYData, recs: recs(&pb.TtyDataEntry{TtyId: 13, Data: []byte("ls\n")}),
			crit: `{"magic": "TTY_DATA", "entries": [{"tty_id": 13, "data": "bHMK\n"}]}`},
		{kind: Seccomp, recs: recs(&pb.SeccompEntry{SeccompFilters: []*pb.SeccompFilter{
			{Filter: []byte{6, 0, 0, 0, 0, 0, 0xff, 0x7f}, Flags: u32(1)},
		}}), crit: `{"magic": "SECCOMP", "entries": [{"seccomp_filters": [{"filter": "BgAAAAAA/38=\n", "flags": 1}]}]}`},
		{kind: UTSNS, id: 14, recs: recs(&pb.UtsnsEntry{Nodename: "box", Domainname: "(none)"}),
			crit: `{"magic": "UTSNS", "entries": [{"nodename": "box", "domainname": "(none)"}]}`},
		{kind: Memfd, recs: recs(&pb.MemfdInodeEntry{
			Name: "memfd:jit", Uid: 1000, Gid: 1000, Size: 8192, Shmid: 15,
			Seals: 1, InodeId: 15,
		}), crit: `{"magic": "MEMFD_INODE", "entries": [{"name": "memfd:jit", "uid": 1000, "size": 8192,
			"shmid": 15, "seals": "F_SEAL_SEAL", "inode_id": 15}]}`},
		{kind: Cpuinfo, recs: recs(&pb.CpuinfoEntry{X86Entry: []*pb.CpuinfoX86Entry{{
			VendorId: pb.CpuinfoX86Entry_INTEL, CpuFamily: 6, Model: 143, Stepping: 8,
			CapabilityVer: 0, ModelId: str("Intel(R) Xeon(R)"), XfeaturesMask: u64(0x602e7), XsaveSize: u32(11008),
		}}}), crit: `{"magic": "CPUINFO", "entries": [{"x86_entry": [{"vendor_id": "INTEL", "cpu_family": 6, "model": 143,
			"stepping": 8, "capability_ver": 0, "model_id": "Intel(R) Xeon(R)", "xfeatures_mask": 393959, "xsave_size": 11008}]}]}`},
		{kind: Cgroup, recs: recs(&pb.CgroupEntry{
			Sets: []*pb.CgSetEntry{
				{Id: 1, Ctls: []*pb.CgMemberEntry{{Name: "memory", Path: "/"}, {Name: "", Path: "/"}}},
				{Id: 2, Ctls: []*pb.CgMemberEntry{{Name: "memory", Path: "/job"}, {Name: "", Path: "/"}}},
			},
			Controllers: []*pb.CgControllerEntry{{Cnames: []string{"memory"}}, {Cnames: []string{""}}},
		}), crit: `{"magic": "CGROUP", "entries": [{"sets": [{"id": 1, "ctls": [{"name": "memory", "path": "/"}, {"name": "", "path": "/"}]},
			{"id": 2, "ctls": [{"name": "memory", "path": "/job"}, {"name": "", "path": "/"}]}],
			"controllers": [{"cnames": ["memory"]}, {"cnames": [""]}]}]}`},
		{kind: FileLocks, recs: recs(
			&pb.FileLockEntry{Flag: 1, Type: 1, Pid: 4242, Fd: 3, Start: 0, Len: 10},
			&pb.FileLockEntry{Flag: 2, Type: 0, Pid: 4242, Fd: 4, Start: 0, Len: 0},
		), crit: `{"magic": "FILE_LOCKS", "entries": [{"flag": 1, "type": 1, "pid": 4242, "fd": 3, "start": 0, "len": 10},
			{"flag": 2, "type": 0, "pid": 4242, "fd": 4, "start": 0, "len": 0}]}`},
		{kind: TCPStream, id: 0x4d2, recs: []record{
			{complete(&pb.TcpStreamEntry{InqLen: 3, InqSeq: 1000, OutqLen: 4, OutqSeq: 2000,
				OptMask: 7, SndWscale: 7, MssClamp: 65483, RcvWscale: u32(7), Timestamp: u32(12345),
				UnsqLen: u32(1), SndWl1: u32(999), SndWnd: u32(65536), MaxWindow: u32(65536), RcvWnd: u32(65536), RcvWup: u32(997)}),
				[]byte("inqoutq")},
		}, crit: `{"magic": "TCP_STREAM", "entries": [{"inq_len": 3, "inq_seq": 1000, "outq_len": 4, "outq_seq": 2000,
			"opt_mask": "0x7", "snd_wscale": 7, "mss_clamp": 65483, "rcv_wscale": 7, "timestamp": 12345, "unsq_len": 1,
			"snd_wl1": 999, "snd_wnd": 65536, "max_window": 65536, "rcv_wnd": 65536, "rcv_wup": 997,
			"extra": {"inq": "aW5x\n", "outq": "b3V0cQ==\n"}}]}`},
		// One segment: crit reads as many bytes after each entry as the
		// segment's size, the contents of images made before in_pagemaps
		// (which it does not look at), so it shows only the first segment
		// of an image that holds several, CRIU's as ours.
		{kind: IpcShm, id: 4, recs: recs(&pb.IpcShmEntry{
			Desc: &pb.IpcDescEntry{Key: 0x1234abcd, Uid: 1000, Gid: 100, Cuid: 0, Cgid: 0,
				Mode: 0o1640, Id: 12345},
			Size: 10000, InPagemaps: pb.Bool(true),
		}), crit: `{"magic": "IPCNS_SHM", "entries": [{"desc": {"key": 305441741, "uid": 1000, "gid": 100, "cuid": 0, "cgid": 0,
			"mode": 928, "id": 12345}, "size": 10000, "in_pagemaps": true}]}`},
		// Each set's u16 values, padded to 8 bytes, follow its entry.
		{kind: IpcSem, id: 4, recs: []record{
			{complete(&pb.IpcSemEntry{Desc: &pb.IpcDescEntry{Key: 0x1234abcd, Uid: 1000, Gid: 100,
				Mode: 0o640, Id: 7}, Nsems: 3}), []byte{1, 0, 2, 0, 0xff, 0x7f, 0, 0}},
			{complete(&pb.IpcSemEntry{Desc: &pb.IpcDescEntry{Id: 32775, Mode: 0o600}, Nsems: 4}),
				[]byte{0, 0, 1, 0, 0, 0, 9, 0}},
		}, crit: `{"magic": "IPCNS_SEM", "entries": [
			{"desc": {"key": 305441741, "uid": 1000, "gid": 100, "cuid": 0, "cgid": 0, "mode": 416, "id": 7}, "nsems": 3, "extra": [1, 2, 32767]},
			{"desc": {"key": 0, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 384, "id": 32775}, "nsems": 4, "extra": [0, 1, 0, 9]}]}`},
		// Each queue's entry is followed by its qnum messages: an ipc_msg,
		// then the text padded to 8 bytes.
		{kind: IpcMsg, id: 4, recs: []record{
			{complete(&pb.IpcMsgEntry{Desc: &pb.IpcDescEntry{Key: 0x4321, Mode: 0o666, Id: 2},
				Qbytes: 16384, Qnum: 2}), nil},
			{complete(&pb.IpcMsg{Mtype: 7, Msize: 6}), []byte("hello\x00\x00\x00")},
			{complete(&pb.IpcMsg{Mtype: 3, Msize: 9}), []byte("123456789\x00\x00\x00\x00\x00\x00\x00")},
			{complete(&pb.IpcMsgEntry{Desc: &pb.IpcDescEntry{Id: 3, Mode: 0o600}, Qbytes: 100, Qnum: 0}), nil},
		}, crit: `{"magic": "IPCNS_MSG", "entries": [
			{"desc": {"key": 17185, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 438, "id": 2}, "qbytes": 16384, "qnum": 2,
				"extra": [{"mtype": 7, "msize": 6}, "aGVsbG8A\n", {"mtype": 3, "msize": 9}, "MTIzNDU2Nzg5\n"]},
			{"desc": {"key": 0, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 384, "id": 3}, "qbytes": 100, "qnum": 0, "extra": []}]}`},
		// cryo's own image: crit knows neither its magic nor its message,
		// so it has no crit output to match (TestCritDecodesEveryKind).
		{kind: FileStats, recs: []record{{msg: FileStat{ID: 3, UID: 65534, GID: 65534, MtimeSec: 1700000000,
			MtimeNsec: 123456789, Dev: 0x803, Inode: 4242, BtimeSec: 1690000000, BtimeNsec: 5}.message()}}},
		{kind: SockExtras, recs: []record{
			{msg: SockExtra{ID: 7, PeekOff: 3}.message()},
			{msg: SockExtra{ID: 8, PeekOff: -1, Opts: []SockOpt{{Level: 0, Name: 11, Value: 1}, {Level: 1, Name: 29, Value: 1}}}.message()},
			{msg: SockExtra{ID: 9, PeekOff: -1, Groups: []McastGroup{{1, netip.MustParseAddr("239.7.7.7")}, {2, netip.MustParseAddr("ff15::777")}}}.message()},
			{msg: SockExtra{ID: 11, PeekOff: -1, TCPFastOpen: 5, TCPDeferAccept: 15, TCPUserTimeout: 30000}.message()}}},
		{kind: ThreadExtras, recs: []record{{msg: ThreadExtra{TID: 42, CPUs: []uint64{0b10}}.message()},
			{msg: ThreadExtra{TID: 43, CPUs: []uint64{0, 1 << 63}, IOPrio: 3 << 13}.message()},
			{msg: ThreadExtra{TID: 44, IOPrio: 2<<13 | 7, MDWE: 1, CoredumpFilter: new(uint32(0x7f))}.message()},
			{msg: ThreadExtra{TID: 45, CoredumpFilter: new(uint32(0))}.message()},
			{msg: ThreadExtra{TID: 46, MemPolicy: 3 | 1<<15, MemNodes: []uint64{0b101}}.message()},
			{msg: ThreadExtra{TID: 47, LoginUID: new(uint32(1000))}.message()}}},
		{kind: IOUrings, recs: []record{{msg: sampleIOUring().message()}}},
	}
}

// newMessage returns an empty message of the first type kind k holds.
func newMessage(k Kind) pb.Message {
	return pb.New(k.desc().msgs[0])
}

// encode returns s as our Writer frames it.
func encode(t testing.TB, s sample) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, s.kind, s.kind.FileName(s.id))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.recs {
		if err := w.Write(r.msg); err != nil {
			t.Fatal(err)
		}
		if r.payload != nil {
			if err := w.WritePayload(r.payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sampleIOUring is a ring of 2 SQEs and 4 CQEs with the offsets Linux
// 6.18 gives, a CQE not reaped and an SQE not submitted.
func sampleIOUring() IOUring {
	u := IOUring{ID: 5, SqEntries: 2, CqEntries: 4, SqHead: 17, SqTail: 18, CqHead: 16, CqTail: 17,
		SqOff: [IOUringOffsets]uint32{0, 4, 16, 24, 36, 32, 128}, CqOff: [IOUringOffsets]uint32{8, 12, 20, 28, 44, 64, 40},
		Rings: make([]byte, 136), SQEs: make([]byte, 2*IOUringSQESize)}
	u.SQEs[64] = 1
	return u
}
