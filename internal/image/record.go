package image

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// RecordWriter writes an image of one record that is made in parts: the
// elements of a repeated message field go to the file as they are made,
// the message's other fields after them (the wire format lets fields come
// in any order), and the record's length, before them all, last. A dump
// of 60,000 VMAs held their encoding, 1.9 MB, until it wrote the mm image
// at its end. The file is closed between parts (Pause), so that a dump of
// many processes does not hold a descriptor and a buffer for each. It is
// not safe for concurrent use.
type RecordWriter struct {
	kind Kind
	name string
	path string
	f    *os.File      // nil while paused
	w    *bufio.Writer // on f
	buf  []byte        // the last element's encoding, reused
	n    int64         // bytes of the record written so far
	err  error         // the first error, returned by every later call
	done func(error)
}

// CreateRecord starts the image of kind k for object id, one record
// written in parts.
func (d *Dir) CreateRecord(k Kind, id uint32) (*RecordWriter, error) {
	if k.raw() {
		return nil, fmt.Errorf("create %s: %s images hold raw data, not records", k.FileName(id), k)
	}
	f, done, err := d.createFile(k, id)
	if err != nil {
		return nil, err
	}
	r := &RecordWriter{kind: k, name: k.FileName(id), path: f.Name(), f: f, w: bufio.NewWriter(f), done: done}
	// The header, and room for the length.
	if err := r.put(append(k.appendHeader(nil), 0, 0, 0, 0)); err != nil {
		f.Close()
		done(err)
		return nil, err
	}
	return r, nil
}

// lengthAt is the offset of the record's length.
func (r *RecordWriter) lengthAt() int64 { return 4 * int64(len(r.kind.header())) }

// Add appends m as an element of the record's repeated message field
// number field.
func (r *RecordWriter) Add(field int32, m pb.Message) error {
	if err := r.open(); err != nil {
		return err
	}
	b, err := pb.AppendField(r.buf[:0], field, m)
	if err != nil {
		return fmt.Errorf("write %s: marshal %s: %w", r.name, m.ProtoName(), err)
	}
	r.buf = b
	r.n += int64(len(b))
	return r.put(b)
}

// Restart drops every element added, for the record to be made again.
func (r *RecordWriter) Restart() error {
	if err := r.open(); err != nil {
		return err
	}
	// The buffer may hold the header still.
	err := r.w.Flush()
	start := r.lengthAt() + 4
	if err == nil {
		err = r.f.Truncate(start)
	}
	if err == nil {
		_, err = r.f.Seek(start, io.SeekStart)
	}
	if err != nil {
		r.err = fmt.Errorf("write %s: %w", r.name, err)
	}
	r.n = 0
	return r.err
}

// Pause writes out what was added and closes the file, which the next
// call opens again.
func (r *RecordWriter) Pause() error {
	if r.f == nil {
		return r.err
	}
	var err error
	if r.err == nil {
		err = r.w.Flush()
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f, r.w, r.buf = nil, nil, nil
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("write %s: %w", r.name, err)
	}
	return r.err
}

// Finish appends m, a message the kind holds with every required field
// set, for the record's other fields, writes the record's length and
// closes the image: it is complete once Finish returns nil, and durable
// once its Dir's Sync does.
func (r *RecordWriter) Finish(m pb.Message) error {
	err := r.finish(m)
	if r.f != nil {
		if cerr := r.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", r.name, cerr)
		}
		r.f, r.w = nil, nil
	}
	r.done(err)
	r.err = fmt.Errorf("write %s: %w", r.name, os.ErrClosed)
	return err
}

func (r *RecordWriter) finish(m pb.Message) error {
	typ := m.ProtoName()
	if !r.kind.holds(typ) {
		return fmt.Errorf("write %s: %s records do not belong in %s images", r.name, typ, r.kind)
	}
	if err := r.open(); err != nil {
		return err
	}
	b, err := pb.AppendMarshal(r.buf[:0], m)
	if err != nil {
		return fmt.Errorf("write %s: marshal %s: %w", r.name, typ, err)
	}
	n := r.n + int64(len(b))
	if n > MaxRecord {
		return fmt.Errorf("write %s: %s of %d bytes: %w", r.name, typ, n, ErrTooLarge)
	}
	if err := r.put(b); err != nil {
		return err
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", r.name, err)
	}
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], uint32(n))
	if _, err := r.f.WriteAt(l[:], r.lengthAt()); err != nil {
		return fmt.Errorf("write %s: %w", r.name, err)
	}
	return nil
}

// open opens the file again after a Pause.
func (r *RecordWriter) open() error {
	if r.err != nil || r.f != nil {
		return r.err
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err == nil {
		_, err = f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		r.err = fmt.Errorf("write %s: %w", r.name, err)
		return r.err
	}
	r.f, r.w = f, bufio.NewWriter(f)
	return nil
}

func (r *RecordWriter) put(p []byte) error {
	if _, err := r.w.Write(p); err != nil {
		r.err = fmt.Errorf("write %s: %w", r.name, err)
		return r.err
	}
	return nil
}
