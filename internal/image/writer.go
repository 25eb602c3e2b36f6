package image

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// MaxRecord bounds the length of one record. Real records stay far below
// it (an mm image with 65530 VMAs is about 4 MiB); the bound keeps a corrupt
// length from making a reader allocate without limit.
const MaxRecord = 64 << 20

// Writer appends records to one image. It is not safe for concurrent use.
type Writer struct {
	w    *bufio.Writer
	f    *os.File // the file the Writer owns, or nil
	kind Kind
	name string
	buf  []byte // reused: length prefix plus marshalled record
	err  error  // first write error, returned by every later call
	done func(error)
	// owed is how many payload bytes the last record announced and
	// WritePayload has not yet written; -1 for the rest of the image.
	owed int64
	last string // the last record's type, for messages
}

// NewWriter starts an image of kind k on w by writing its magic header;
// name labels errors. Close flushes but leaves w open.
func NewWriter(w io.Writer, k Kind, name string) (*Writer, error) {
	return newWriter(w, nil, k, name)
}

func newWriter(w io.Writer, f *os.File, k Kind, name string) (*Writer, error) {
	if k.raw() {
		return nil, fmt.Errorf("write %s: %s images hold raw data, not records", name, k)
	}
	iw := &Writer{w: bufio.NewWriter(w), f: f, kind: k, name: name, buf: make([]byte, 4, 512)}
	if _, err := iw.w.Write(k.appendHeader(nil)); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	return iw, nil
}

// appendHeader appends the magic numbers images of kind k start with.
func (k Kind) appendHeader(b []byte) []byte {
	for _, m := range k.header() {
		b = binary.LittleEndian.AppendUint32(b, m)
	}
	return b
}

// Write appends m as one record. m must be one of the message types the
// kind holds, with every required field set. If the previous record
// announced a payload, WritePayload must have written all of it.
func (w *Writer) Write(m pb.Message) error {
	if w.err != nil {
		return w.err
	}
	typ := m.ProtoName()
	if !w.kind.holds(typ) {
		return fmt.Errorf("write %s: %s records do not belong in %s images", w.name, typ, w.kind)
	}
	switch {
	case w.owed > 0:
		return fmt.Errorf("write %s: payload of %s short by %d bytes", w.name, w.last, w.owed)
	case w.owed < 0:
		return fmt.Errorf("write %s: no record may follow %s, whose payload is the rest of the image", w.name, w.last)
	}
	b, err := pb.AppendMarshal(w.buf[:4], m)
	if err != nil {
		return fmt.Errorf("write %s: marshal %s: %w", w.name, typ, err)
	}
	w.buf = b[:4]
	n := len(b) - 4
	if n > MaxRecord {
		return fmt.Errorf("write %s: %s of %d bytes: %w", w.name, typ, n, ErrTooLarge)
	}
	binary.LittleEndian.PutUint32(b, uint32(n))
	if err := w.put(b); err != nil {
		return err
	}
	w.owed, w.last = payloadLen(m), string(typ)
	return nil
}

// WritePayload appends raw bytes that the last record announced: pipe
// contents after a PipeDataEntry, file data after a GhostChunkEntry or a
// GhostFileEntry without chunks. It may be called several times per record.
func (w *Writer) WritePayload(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(p) == 0 {
		return nil
	}
	if w.owed == 0 || (w.owed > 0 && int64(len(p)) > w.owed) {
		return fmt.Errorf("write %s: %d payload bytes, but the last record (%s) announces %d more",
			w.name, len(p), w.last, max(w.owed, 0))
	}
	if err := w.put(p); err != nil {
		return err
	}
	if w.owed > 0 {
		w.owed -= int64(len(p))
	}
	return nil
}

func (w *Writer) put(p []byte) error {
	if _, err := w.w.Write(p); err != nil {
		w.err = fmt.Errorf("write %s: %w", w.name, err)
		return w.err
	}
	return nil
}

// Close flushes the image and, if the Writer owns its file, closes it: an
// image is complete once Close returns nil, and durable once its Dir's
// Sync returns nil (Close does not fsync, so that a dump waits for the
// disk once for all its images).
func (w *Writer) Close() error {
	if errors.Is(w.err, os.ErrClosed) {
		return w.err
	}
	err := w.err
	if err == nil && w.owed > 0 {
		err = fmt.Errorf("write %s: payload of %s short by %d bytes", w.name, w.last, w.owed)
	}
	if err == nil {
		if ferr := w.w.Flush(); ferr != nil {
			err = fmt.Errorf("write %s: %w", w.name, ferr)
		}
	}
	if w.f != nil {
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", w.name, cerr)
		}
	}
	if w.done != nil {
		w.done(err)
	}
	w.err = fmt.Errorf("write %s: %w", w.name, os.ErrClosed)
	return err
}
