package files

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// An open file's owner (F_SETOWN, F_SETSIG) is who its signal-driven I/O
// (O_ASYNC) signals, and a socket's SIGURG, go to: kept in the fown entry
// of the file's kind, with the real and effective uid it was set with,
// which decide whether the signal may be sent (F_GETOWNER_UIDS), and set
// again by a thread with those uids.

// entryFown returns the field that holds the fown entry of f's kind, if
// that kind has one.
func entryFown(f *fdinfo.FileEntry) (protoreflect.Message, protoreflect.FieldDescriptor) {
	var m protoreflect.Message
	var fd protoreflect.FieldDescriptor
	f.ProtoReflect().Range(func(field protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if field.Kind() != protoreflect.MessageKind {
			return true
		}
		if own := field.Message().Fields().ByName("fown"); own != nil {
			m, fd = v.Message(), own
			return false
		}
		return true
	})
	return m, fd
}

// dumpOwner records the owner of descriptor fd, entry f, if it has one.
func (t *Table) dumpOwner(fd int, f *fdinfo.FileEntry) error {
	dup, err := kernel.Getfd(t.view, fd)
	if err != nil {
		return err
	}
	o, err := kernel.GetOwner(dup)
	closeAll([]int{dup})
	if err != nil || o.Pid == 0 && o.Sig == 0 {
		return err
	}
	m, field := entryFown(f)
	if m == nil {
		return fmt.Errorf("%w: fd %d (%v) has an owner for its signals (F_SETOWN), which its kind's entry cannot hold", ErrUnsupported, fd, f.GetType())
	}
	e := &fown.FownEntry{Uid: proto.Uint32(o.UID), Euid: proto.Uint32(o.EUID), Signum: proto.Uint32(uint32(o.Sig)),
		PidType: proto.Uint32(uint32(o.Type)), Pid: proto.Uint32(uint32(o.Pid))}
	m.Set(field, protoreflect.ValueOfMessage(e.ProtoReflect()))
	return nil
}

// restoreOwner gives the file cryo made of entry f, fd, its owner, if it
// had one, from a thread with the uids it was set with.
func (r *Restorer) restoreOwner(fd int, f *fdinfo.FileEntry) error {
	m, field := entryFown(f)
	if m == nil || !m.Has(field) {
		return nil
	}
	e, ok := m.Get(field).Message().Interface().(*fown.FownEntry)
	if !ok || e.GetPid() == 0 && e.GetSignum() == 0 {
		return nil
	}
	o := kernel.Owner{Type: int(e.GetPidType()), Pid: int(e.GetPid()), Sig: int(e.GetSignum())}
	c := kernel.Creds{UID: e.GetUid(), EUID: e.GetEuid(), SUID: e.GetEuid()}
	if err := onThreadAs(&c, func() error { return kernel.SetOwner(fd, o) }); err != nil {
		return fmt.Errorf("owner of its signals: %w", err)
	}
	return nil
}
