package files

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// dumpDatagrams records the datagrams queued to UDP socket fd, entry id.
func (t *Table) dumpDatagrams(fd int, id uint32, diag kernel.InetDiag) error {
	if diag.Rqueue != 0 {
		return fmt.Errorf("%w: UDP socket %v with %d bytes of datagrams queued", ErrUnsupported, diag.Local(), diag.Rqueue)
	}
	return nil
}

// restoreDatagrams queues to socket fd the datagrams of entry f.
func (r *Restorer) restoreDatagrams(fd int, f *fdinfo.FileEntry) error { return nil }
