package files

import (
	"fmt"
	"net/netip"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
)

// tcpTable is the established TCP connections a dump holds.
type tcpTable struct{}

func (t *tcpTable) addConnection(fd int, e *skinet.InetSkEntry, local, remote netip.AddrPort) error {
	return fmt.Errorf("%w: established TCP connection %v -> %v", ErrUnsupported, local, remote)
}

func (s *Set) checkConnection(f *fdinfo.FileEntry) error {
	return fmt.Errorf("%w: established TCP connection", ErrUnsupported)
}

func (r *Restorer) restoreConnection(n uint64, f *fdinfo.FileEntry) error {
	return fmt.Errorf("%w: established TCP connection", ErrUnsupported)
}
