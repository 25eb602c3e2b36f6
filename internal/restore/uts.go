package restore

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// maxUTSName is the longest host or domain name (__NEW_UTS_LEN).
const maxUTSName = 64

// loadUTS reads the names of the tree's UTS namespace, if the dump kept
// them: the root had one of its own.
func (t *tree) loadUTS() error {
	id := t.procs[0].ids().GetUtsNsId()
	if id == 0 {
		return nil
	}
	uts := &pb.UtsnsEntry{}
	switch err := t.dir.ReadImage(image.UTSNS, id, uts); {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%w: names of UTS namespace %d: %w", ErrImage, id, err)
	case len(uts.GetNodename()) > maxUTSName || len(uts.GetDomainname()) > maxUTSName:
		return fmt.Errorf("%w: UTS namespace %d: names of %d and %d bytes, above %d", ErrImage, id, len(uts.GetNodename()), len(uts.GetDomainname()), maxUTSName)
	}
	t.uts = uts
	return nil
}

// utsNamespace moves the stub, and so the processes it forks, into a new
// UTS namespace with the names the dump kept, when the root had one of its
// own.
func (t *tree) utsNamespace() error {
	uts := t.uts
	if uts == nil {
		return nil
	}
	stub := t.stub.Pid()
	if _, err := t.stub.Syscall(stub, unix.SYS_UNSHARE, unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare UTS namespace: %w", err)
	}
	for _, n := range []struct {
		nr         int
		name, what string
	}{{unix.SYS_SETHOSTNAME, uts.GetNodename(), "host name"}, {unix.SYS_SETDOMAINNAME, uts.GetDomainname(), "domain name"}} {
		at, err := t.stub.WriteString(stub, n.name)
		if err != nil {
			return err
		}
		if _, err := t.stub.Syscall(stub, n.nr, at, uint64(len(n.name))); err != nil {
			return fmt.Errorf("set %s %q: %w", n.what, n.name, err)
		}
	}
	t.log.Info("UTS namespace of its own", "hostname", uts.GetNodename(), "domainname", uts.GetDomainname())
	return nil
}
