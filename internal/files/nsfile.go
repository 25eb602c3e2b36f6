package files

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// nsKind is a namespace file, such as /proc/self/ns/net held open. Only
// the process's own namespaces are kept: the restore opens the restored
// process's namespace of the same kind, the one it runs in.
type nsKind struct{}

// namespace is a kind of namespace: its name under /proc/PID/ns, its clone
// flag, and the id the images give the process's namespace of that kind.
type namespace struct {
	name  string
	cflag uint32
	id    uint32
}

// TimeNsID is the id of the process's time namespace in the images, that
// of its timens image.
const TimeNsID = 1

// namespaces are the kinds of namespace. The images name the namespaces
// of the process by ids (TaskKobjIdsEntry), which an NS entry refers to;
// the process being alone, there is one namespace of each kind, numbered
// once, here.
var namespaces = []namespace{
	{"net", unix.CLONE_NEWNET, 2},
	{"uts", unix.CLONE_NEWUTS, 3},
	{"ipc", unix.CLONE_NEWIPC, 4},
	{"pid", unix.CLONE_NEWPID, 5},
	{"user", unix.CLONE_NEWUSER, 6},
	{"mnt", unix.CLONE_NEWNS, 7},
	{"cgroup", unix.CLONE_NEWCGROUP, 8},
	{"time", unix.CLONE_NEWTIME, TimeNsID},
}

// SetNsIDs gives the process's namespaces their ids in ids.
func SetNsIDs(ids *pb.TaskKobjIdsEntry) {
	for _, n := range namespaces {
		id := pb.Uint32(n.id)
		switch n.cflag {
		case unix.CLONE_NEWNET:
			ids.NetNsId = id
		case unix.CLONE_NEWUTS:
			ids.UtsNsId = id
		case unix.CLONE_NEWIPC:
			ids.IpcNsId = id
		case unix.CLONE_NEWPID:
			ids.PidNsId = id
		case unix.CLONE_NEWUSER:
			ids.UserNsId = id
		case unix.CLONE_NEWNS:
			ids.MntNsId = id
		case unix.CLONE_NEWCGROUP:
			ids.CgroupNsId = id
		case unix.CLONE_NEWTIME:
			ids.TimeNsId = id
		}
	}
}

func (nsKind) typ() pb.FdTypes { return pb.FdTypes_NS }

// nsOf returns the namespace kind a descriptor's link ("net:[INO]")
// names.
func nsOf(link string) (namespace, bool) {
	name, _, ok := strings.Cut(link, ":[")
	if !ok || !strings.HasSuffix(link, "]") {
		return namespace{}, false
	}
	for _, n := range namespaces {
		if n.name == name {
			return n, true
		}
	}
	return namespace{}, false
}

func (nsKind) claims(d *desc) bool {
	_, ok := nsOf(d.link)
	return ok
}

func (nsKind) dump(t *Table, d *desc) (uint32, error) {
	n, _ := nsOf(d.link)
	var own unix.Stat_t
	if err := unix.Stat(proc.Path(t.view, "ns/"+n.name), &own); err != nil {
		return 0, err
	}
	if own.Ino != d.st.Ino || own.Dev != d.st.Dev {
		return 0, fmt.Errorf("%w: fd %d is the %s namespace %s, not the process's own (%s:[%d])",
			ErrUnsupported, d.fd, n.name, d.link, n.name, own.Ino)
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_NS, Id: id,
		Entry: &pb.NsFileEntry{Id: id, NsId: n.id, NsCflag: n.cflag, Flags: statusFlags(d.info)},
	}), nil
}

// nsByFlag returns the namespace kind of an NS entry.
func nsByFlag(f *pb.FileEntry) (namespace, error) {
	for _, n := range namespaces {
		if n.cflag == f.GetNsf().GetNsCflag() {
			return n, nil
		}
	}
	return namespace{}, imageErr("file %d: namespace of clone flag %#x", f.GetId(), f.GetNsf().GetNsCflag())
}

func (nsKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetNsf() == nil {
		return imageErr("file %d: NS without an nsf entry", f.GetId())
	}
	_, err := nsByFlag(f)
	return err
}

// open opens the restored process's own namespace of the entry's kind.
func (nsKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	n, err := nsByFlag(f)
	if err != nil {
		return -1, err
	}
	return r.reopen(fmt.Sprintf("/proc/%d/ns/%s", r.pid, n.name), f.GetNsf().GetFlags(), 0)
}
