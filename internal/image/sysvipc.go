package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"io"
)

// SemSet is a System V semaphore set of an ipcns-sem image: its entry,
// then its values.
type SemSet struct {
	Entry  *pb.IpcSemEntry
	Values []uint16
}

// MsgQueue is a System V message queue of an ipcns-msg image: its entry,
// then its messages, first to be received first.
type MsgQueue struct {
	Entry *pb.IpcMsgEntry
	Msgs  []Msg
}

// Msg is one queued message: its type and text.
type Msg struct {
	Type uint64
	Text []byte
}

// WriteSemSets writes the semaphore sets of IPC namespace ns.
func WriteSemSets(d *Dir, ns uint32, sets []SemSet) error {
	w, err := d.Create(IpcSem, ns)
	if err != nil {
		return err
	}
	for _, s := range sets {
		if int(s.Entry.GetNsems()) != len(s.Values) {
			err = fmt.Errorf("write %s: set %d of %d semaphores with %d values", w.name, s.Entry.GetDesc().GetId(), s.Entry.GetNsems(), len(s.Values))
			break
		}
		b := make([]byte, payloadLen(s.Entry))
		for i, v := range s.Values {
			binary.LittleEndian.PutUint16(b[2*i:], v)
		}
		if err = w.Write(s.Entry); err != nil {
			break
		}
		if err = w.WritePayload(b); err != nil {
			break
		}
	}
	return errors.Join(err, w.Close())
}

// ReadSemSets reads the semaphore sets of an ipcns-sem image.
func ReadSemSets(r *Reader) ([]SemSet, error) {
	var sets []SemSet
	for {
		e := &pb.IpcSemEntry{}
		switch err := r.Next(e); {
		case errors.Is(err, io.EOF):
			return sets, nil
		case err != nil:
			return nil, err
		}
		b, err := r.readPayload(2 * int64(e.GetNsems()))
		if err != nil {
			return nil, err
		}
		vals := make([]uint16, e.GetNsems())
		for i := range vals {
			vals[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		sets = append(sets, SemSet{Entry: e, Values: vals})
	}
}

// WriteMsgQueues writes the message queues of IPC namespace ns, each
// entry's qnum the number of its messages.
func WriteMsgQueues(d *Dir, ns uint32, queues []MsgQueue) error {
	w, err := d.Create(IpcMsg, ns)
	if err != nil {
		return err
	}
	write := func(q MsgQueue) error {
		q.Entry.Qnum = uint32(len(q.Msgs))
		if err := w.Write(q.Entry); err != nil {
			return err
		}
		for _, m := range q.Msgs {
			h := &pb.IpcMsg{Mtype: m.Type, Msize: uint32(len(m.Text))}
			if err := w.Write(h); err != nil {
				return err
			}
			b := make([]byte, payloadLen(h))
			copy(b, m.Text)
			if err := w.WritePayload(b); err != nil {
				return err
			}
		}
		return nil
	}
	for _, q := range queues {
		if err = write(q); err != nil {
			break
		}
	}
	return errors.Join(err, w.Close())
}

// ReadMsgQueues reads the message queues of an ipcns-msg image.
func ReadMsgQueues(r *Reader) ([]MsgQueue, error) {
	var queues []MsgQueue
	for {
		e := &pb.IpcMsgEntry{}
		switch err := r.Next(e); {
		case errors.Is(err, io.EOF):
			return queues, nil
		case err != nil:
			return nil, err
		}
		q := MsgQueue{Entry: e}
		for range e.GetQnum() {
			h := &pb.IpcMsg{}
			if err := r.Next(h); errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read %s: queue %d: %w: %d messages of %d", r.name, e.GetDesc().GetId(), ErrCount, len(q.Msgs), e.GetQnum())
			} else if err != nil {
				return nil, err
			}
			b, err := r.readPayload(int64(h.GetMsize()))
			if err != nil {
				return nil, err
			}
			q.Msgs = append(q.Msgs, Msg{Type: h.GetMtype(), Text: b})
		}
		queues = append(queues, q)
	}
}

// readPayload returns the first n bytes of the last record's payload,
// padding left to Next to skip.
func (r *Reader) readPayload(n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Payload(), n))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) < n {
		return nil, fmt.Errorf("read %s: payload at offset %d: %w", r.name, r.off, ErrTruncated)
	}
	return b, nil
}
