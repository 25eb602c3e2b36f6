package files

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// A kind is one kind of open file, both directions side by side.
type kind interface {
	// typ is the file type of the kind's entries in files.img.
	typ() pb.FdTypes
	// claims reports whether a descriptor of the dumped process is of
	// this kind.
	claims(d *desc) bool
	// dump records descriptor d in t and returns the id of the entry
	// that the descriptor refers to.
	dump(t *Table, d *desc) (uint32, error)
	// check checks an entry read from the images before anything is
	// built: every reference it makes resolves.
	check(s *Set, f *pb.FileEntry) error
	// open makes a new open file description for entry f of the process
	// being restored and returns cryo's descriptor of it, close-on-exec,
	// which the restorer sends to the process (deliver.go) and closes;
	// what else it opens it closes, but for what its kind holds until
	// the entry's group is opened (grouper).
	open(r *Restorer, f *pb.FileEntry) (int, error)
}

// kinds is the table of kinds, in the order they are offered a
// descriptor at dump: the first that claims it records it.
var kinds = []kind{
	pipeKind{},
	unixKind{},
	eventfdKind{},
	eventpollKind{},
	timerfdKind{},
	signalfdKind{},
	inotifyKind{},
	fanotifyKind{},
	pidfdKind{},
	ioUringKind{},
	memfdKind{},
	nsKind{},
	fifoKind{},
	ttyKind{},
	inetKind{},
	netlinkKind{},
	packetKind{},
	regKind{},
}

// kindOf returns the kind of the entries of type t.
func kindOf(t pb.FdTypes) (kind, bool) {
	for _, k := range kinds {
		if k.typ() == t {
			return k, true
		}
	}
	return nil, false
}

// desc is a descriptor of the dumped process, as /proc shows it.
type desc struct {
	fd   int
	info proc.Fdinfo
	// link is what /proc/PID/fd/N reads: a path, or "pipe:[INO]",
	// "anon_inode:[eventfd]" and the like.
	link string
	st   unix.Stat_t
	// path is /proc/PID/fd/N, through which cryo reaches the file.
	path string
	// holder is the process whose descriptor fd is, when it is not the
	// one being dumped: cryo's, for a file in flight.
	holder int
}

func (d *desc) String() string { return fmt.Sprintf("fd %d (%s)", d.fd, d.link) }

// mode is the file type of the descriptor's inode.
func (d *desc) mode() uint32 { return d.st.Mode & unix.S_IFMT }
