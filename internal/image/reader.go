package image

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// Reader parses the records of one image. It is not safe for concurrent
// use.
type Reader struct {
	r       *bufio.Reader
	c       io.Closer   // the file the Reader owns, or nil
	at      io.ReaderAt // the same file, for NextEach; nil for a stream
	kind    Kind
	name    string
	off     int64 // bytes consumed so far, for error messages
	pending int64 // unread bytes of the current payload; -1: the rest
	buf     []byte
	err     error // the first error; where it left the input, nothing more makes sense
}

// NewReader checks the magic header of an image of kind k on r; name labels
// errors.
func NewReader(r io.Reader, k Kind, name string) (*Reader, error) {
	if k.raw() {
		return nil, fmt.Errorf("read %s: %s images hold raw data, not records", name, k)
	}
	ir := &Reader{r: bufio.NewReader(r), kind: k, name: name}
	for _, want := range k.header() {
		var b [4]byte
		if _, err := io.ReadFull(ir.r, b[:]); err != nil {
			return nil, ir.cut(err, "header")
		}
		ir.off += 4
		if got := binary.LittleEndian.Uint32(b[:]); got != want {
			return nil, fmt.Errorf("%w %#x in %s, want %#x (%s)", ErrMagic, got, name, want, k)
		}
	}
	return ir, nil
}

// cut turns an error from reading what starts at r.off into ours: an end of
// input there means the image is truncated.
func (r *Reader) cut(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read %s: %s at offset %d: %w", r.name, what, r.off, ErrTruncated)
	}
	return fmt.Errorf("read %s: %w", r.name, err)
}

// Next reads the next record into m, which must be one of the message types
// the kind holds. It returns io.EOF, unwrapped, at the clean end of the
// image. It skips whatever of the previous record's payload is unread.
func (r *Reader) Next(m pb.Message) error {
	return r.next(m, func(size int) error {
		b, err := r.read(size)
		if err != nil {
			return r.cut(err, fmt.Sprintf("%d-byte record", size))
		}
		return r.decoded(m, pb.Unmarshal(b, m))
	})
}

// NextEach reads the next record into m as Next does, except the
// elements of its repeated message field number field, which it hands to
// f one at a time, decoded into elem, without holding the record whole
// (pb.UnmarshalEachAt). The Reader must read a file (Dir.Open).
func (r *Reader) NextEach(m pb.Message, field int32, elem pb.Message, f func(i int)) error {
	if r.at == nil {
		return fmt.Errorf("read %s: a record is read in parts only from a file", r.name)
	}
	return r.next(m, func(size int) error {
		err := pb.UnmarshalEachAt(r.at, r.off, int64(size), m, field, elem, f)
		switch {
		case errors.Is(err, pb.ErrCorrupt) || errors.Is(err, pb.ErrMissingField):
			return r.decoded(m, err)
		case err != nil:
			return r.cut(err, fmt.Sprintf("%d-byte record", size))
		}
		// The stream is still at the record's start.
		if _, err := r.r.Discard(size); err != nil {
			return r.cut(err, fmt.Sprintf("%d-byte record", size))
		}
		return nil
	})
}

// next reads the next record with read, which decodes its size bytes
// into m.
func (r *Reader) next(m pb.Message, read func(size int) error) error {
	typ := m.ProtoName()
	if !r.kind.holds(typ) {
		return fmt.Errorf("read %s: %s records do not belong in %s images", r.name, typ, r.kind)
	}
	if r.err == nil {
		r.err = r.record(m, read)
	}
	return r.err
}

// decoded wraps err, from decoding the record at r.off into m.
func (r *Reader) decoded(m pb.Message, err error) error {
	if err != nil {
		return fmt.Errorf("read %s: %s at offset %d: %w: %w", r.name, m.ProtoName(), r.off, ErrRecord, err)
	}
	return nil
}

func (r *Reader) record(m pb.Message, read func(size int) error) error {
	if err := r.skip(); err != nil {
		return err
	}
	var lb [4]byte
	switch n, err := io.ReadFull(r.r, lb[:]); {
	case n == 0 && errors.Is(err, io.EOF):
		return io.EOF
	case err != nil:
		return r.cut(err, "record length")
	}
	size := binary.LittleEndian.Uint32(lb[:])
	if size > MaxRecord {
		return fmt.Errorf("read %s: record at offset %d claims %d bytes: %w (limit %d)",
			r.name, r.off, size, ErrTooLarge, MaxRecord)
	}
	r.off += 4
	if err := read(int(size)); err != nil {
		return err
	}
	r.off += int64(size)
	r.pending = payloadLen(m)
	return nil
}

// read returns the next n bytes. The buffer grows only as data arrives, so
// a corrupt length on a short input costs no more memory than the input.
func (r *Reader) read(n int) ([]byte, error) {
	const step = 1 << 20
	b := r.buf[:0]
	for len(b) < n {
		c := min(n-len(b), step)
		b = slices.Grow(b, c)
		got, err := io.ReadFull(r.r, b[len(b):len(b)+c])
		b = b[:len(b)+got]
		if err != nil {
			return nil, err
		}
	}
	r.buf = b
	return b, nil
}

// Payload returns a reader of the raw bytes that follow the last record, as
// many as it announces (see Writer.WritePayload); empty for records without
// a payload. It reports ErrTruncated if the image ends first. The reader is
// valid until the next call to Next.
func (r *Reader) Payload() io.Reader { return payload{r} }

type payload struct{ r *Reader }

func (p payload) Read(b []byte) (int, error) {
	r := p.r
	if r.pending == 0 {
		return 0, io.EOF
	}
	if r.pending > 0 && int64(len(b)) > r.pending {
		b = b[:r.pending]
	}
	n, err := r.r.Read(b)
	r.off += int64(n)
	if r.pending > 0 {
		r.pending -= int64(n)
	}
	switch {
	case errors.Is(err, io.EOF) && r.pending > 0:
		return n, r.cut(err, fmt.Sprintf("payload (%d bytes short)", r.pending))
	case errors.Is(err, io.EOF):
		r.pending = 0
		return n, io.EOF
	case err != nil:
		return n, fmt.Errorf("read %s: %w", r.name, err)
	}
	return n, nil
}

// more reports whether another record follows the current one and its
// payload.
func (r *Reader) more() (bool, error) {
	if r.err != nil {
		return false, r.err
	}
	if err := r.skip(); err != nil {
		return false, err
	}
	switch _, err := r.r.Peek(1); {
	case errors.Is(err, io.EOF):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", r.name, err)
	}
	return true, nil
}

// skip discards what is left of the current payload.
func (r *Reader) skip() error {
	if r.pending < 0 {
		n, err := io.Copy(io.Discard, r.r)
		r.off += n
		r.pending = 0
		if err != nil {
			return fmt.Errorf("read %s: %w", r.name, err)
		}
		return nil
	}
	for r.pending > 0 {
		n, err := r.r.Discard(int(min(r.pending, 1<<30)))
		r.pending -= int64(n)
		r.off += int64(n)
		if err != nil {
			return r.cut(err, fmt.Sprintf("payload (%d bytes short)", r.pending))
		}
	}
	return nil
}

// Close closes the image file if the Reader owns one.
func (r *Reader) Close() error {
	if r.c == nil {
		return nil
	}
	err := r.c.Close()
	r.c = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", r.name, err)
	}
	return nil
}
