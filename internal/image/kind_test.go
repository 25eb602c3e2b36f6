package image

import (
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/magic"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// criuMagic names each kind's magic the way CRIU's magic.h does.
var criuMagic = map[Kind]string{
	Inventory: "INVENTORY", Pstree: "PSTREE", Core: "CORE", MM: "MM", Pagemap: "PAGEMAP", ShmemPagemap: "PAGEMAP",
	Files: "FILES", Fdinfo: "FDINFO", FS: "FS", IDs: "IDS", Creds: "CREDS",
	PipesData: "PIPES_DATA", FifoData: "FIFO_DATA", RemapFpath: "REMAP_FPATH",
	GhostFile: "GHOST_FILE", Timens: "TIMENS", TTYInfo: "TTY_INFO", TTYData: "TTY_DATA",
	Seccomp: "SECCOMP", UTSNS: "UTSNS", Memfd: "MEMFD_INODE",
	Cpuinfo: "CPUINFO", FileLocks: "FILE_LOCKS", SkQueues: "SK_QUEUES", TCPStream: "TCP_STREAM", IpcShm: "IPCNS_SHM",
	IpcSem: "IPCNS_SEM", IpcMsg: "IPCNS_MSG", Cgroup: "CGROUP",
}

// allKinds lists every kind in the table.
func allKinds() []Kind {
	var ks []Kind
	for k := Inventory; int(k) < len(kinds); k++ {
		ks = append(ks, k)
	}
	return ks
}

func TestMagicsMatchGoCRIU(t *testing.T) {
	m := magic.LoadMagic()
	if got, want := uint64(imgCommon), m.ByName["IMG_COMMON"]; got != want {
		t.Errorf("IMG_COMMON = %#x, go-criu says %#x", got, want)
	}
	for _, k := range allKinds() {
		if k.raw() {
			continue
		}
		name, ok := criuMagic[k]
		if k.Own() {
			// cryo's own: its magic must be none of CRIU's.
			if n, taken := m.ByValue[uint64(k.desc().magic)]; taken {
				t.Errorf("%v magic %#x is CRIU's %s", k, k.desc().magic, n)
			}
			continue
		}
		if !ok {
			t.Errorf("%v: no CRIU magic name in the test table", k)
			continue
		}
		if got, want := uint64(k.desc().magic), m.ByName[name]; got != want {
			t.Errorf("%v magic = %#x, go-criu's %s = %#x", k, got, name, want)
		}
	}
}

func TestKindMessagesExist(t *testing.T) {
	for _, k := range allKinds() {
		for _, n := range k.desc().msgs {
			if pb.New(n) == nil {
				t.Errorf("%v: no message %s", k, n)
			}
		}
	}
}

func TestEveryKindHasASample(t *testing.T) {
	have := map[Kind]bool{}
	for _, s := range samples() {
		have[s.kind] = true
	}
	for _, k := range allKinds() {
		if !k.raw() && !have[k] {
			t.Errorf("%v: no sample image", k)
		}
	}
}

func TestFileName(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		id   uint32
		want string
	}{
		{Inventory, 0, "inventory.img"},
		{Core, 4243, "core-4243.img"},
		{Pages, 1, "pages-1.img"},
		{Fdinfo, 2, "fdinfo-2.img"},
		{GhostFile, 0x1a, "ghost-file-1a.img"},
		{PipesData, 9, "pipes-data.img"},
		{Timens, 4026531834, "timens-4026531834.img"},
	} {
		if got := tc.kind.FileName(tc.id); got != tc.want {
			t.Errorf("%v.FileName(%d) = %q, want %q", tc.kind, tc.id, got, tc.want)
		}
	}
	if got := Kind(0).String(); got != "Kind(0)" {
		t.Errorf("Kind(0).String() = %q", got)
	}
}
