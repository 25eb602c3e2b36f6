package pb

import "io"

// Message is one of the package's messages.
type Message interface {
	// ProtoName returns the message's name in CRIU's .proto files
	// (vma_entry), or cryo.NAME for cryo's own.
	ProtoName() string
	// Reset clears every field.
	Reset()

	msg() ref // its table and where it is, for the codec
}

// Size returns the length of m's encoding.
func Size(m Message) int { return sizeOf(m) }

// Marshal encodes m into a slice of just its size (a dump holds what it
// encodes of each thread until the end); it fails if m, or a message in
// it, lacks a required field.
func Marshal(m Message) ([]byte, error) { return AppendMarshal(make([]byte, 0, sizeOf(m)), m) }

// AppendMarshal appends m's encoding to b; it fails if m, or a message in
// it, lacks a required field.
func AppendMarshal(b []byte, m Message) ([]byte, error) {
	if err := checkRequired(m); err != nil {
		return b, err
	}
	return appendMsg(b, m), nil
}

// AppendField appends m as an element of the repeated message field
// number field of the message whose encoding b holds: its key, length
// and encoding. It fails if m, or a message in it, lacks a required
// field.
func AppendField(b []byte, field int32, m Message) ([]byte, error) {
	if err := checkRequired(m); err != nil {
		return b, err
	}
	b = appendVarint(b, uint64(field)<<3|2)
	b = appendVarint(b, uint64(sizeOf(m)))
	return appendMsg(b, m), nil
}

// MmVmasField is the number of mm_entry's field vmas (mm.proto), which a
// dump writes an element at a time (AppendField) and a restore reads so
// (UnmarshalEachAt).
const MmVmasField = 14

// Unmarshal decodes b into m, cleared first; it fails on bytes that do
// not follow the wire format and on a message that lacks a required
// field. Fields it does not know are skipped.
func Unmarshal(b []byte, m Message) error {
	m.Reset()
	if err := unmarshalMsg(b, m); err != nil {
		return err
	}
	return checkRequired(m)
}

// UnmarshalEachAt decodes the size bytes at off in r into m as Unmarshal
// does, except the elements of m's repeated message field number field:
// it decodes each into elem, cleared first, and calls f with its index,
// and m keeps none of them. It reads the bytes eachWindow at a time: a
// caller that keeps what it needs of each element holds neither the
// encoding nor a message per element. The 60,000 VMAs of an mm image are
// 1.9 MB encoded, and took 5.1 MB as messages of their own.
func UnmarshalEachAt(r io.ReaderAt, off, size int64, m Message, field int32, elem Message, f func(i int)) error {
	return unmarshalEachAt(r, off, size, eachWindow, m, field, elem, f)
}

// eachWindow is how many bytes UnmarshalEachAt reads at a time.
const eachWindow = 64 << 10

func unmarshalEachAt(r io.ReaderAt, off, size int64, window int, m Message, field int32, elem Message, f func(i int)) error {
	m.Reset()
	var rest []byte // m's other fields
	i := 0
	err := eachFieldAt(r, off, size, window, m, func(num int32, typ int, all, value []byte) error {
		if num != field || typ != 2 {
			rest = append(rest, all...)
			return nil
		}
		if err := Unmarshal(value, elem); err != nil {
			return err
		}
		f(i)
		i++
		return nil
	})
	if err != nil {
		return err
	}
	if err := unmarshalMsg(rest, m); err != nil {
		return err
	}
	return checkRequired(m)
}

// maxFieldHead is the most bytes a field's key and length, or key and
// scalar value, take: two varints of at most 10 bytes.
const maxFieldHead = 20

// eachFieldAt calls f for each field of the size bytes at off in r, an
// encoding of m, as eachField does, reading them window bytes (at least
// maxFieldHead) at a time: a field that a window cuts is read again at
// the start of the next, or by itself if longer than a window.
func eachFieldAt(r io.ReaderAt, off, size int64, window int, m Message, f func(num int32, typ int, all, value []byte) error) error {
	buf := make([]byte, min(int64(window), size))
	for end := off + size; off < end; {
		b := buf[:min(int64(len(buf)), end-off)]
		if _, err := r.ReadAt(b, off); err != nil {
			return err
		}
		last := off+int64(len(b)) == end
		used := 0
		for used < len(b) && (last || len(b)-used >= maxFieldHead) {
			l, err := fieldSize(b[used:], end-off-int64(used), m)
			if err != nil {
				return err
			}
			if used+l > len(b) {
				if used > 0 {
					break // read again from this field
				}
				// Only a field the input holds to its end, so that a
				// corrupt length costs no memory the input does not back.
				var last [1]byte
				if _, err := r.ReadAt(last[:], off+int64(l)-1); err != nil {
					return err
				}
				whole := make([]byte, l)
				if _, err := r.ReadAt(whole, off); err != nil {
					return err
				}
				b, used = whole, 0
			}
			if err := eachField(b[used:used+l], m, f); err != nil {
				return err
			}
			used += l
		}
		off += int64(used)
	}
	return nil
}

// fieldSize returns how many bytes, key and value, the field that b
// starts with takes, from its key and its length or scalar value: more
// than len(b) if b cuts it, and at most left, the bytes left of the
// encoding of m that b is in.
func fieldSize(b []byte, left int64, m Message) (int, error) {
	num, typ, n := consumeTag(b)
	if n < 0 {
		return 0, corrupt(m.ProtoName(), 0)
	}
	var size uint64
	if typ == 2 {
		l, k := consumeVarint(b[n:])
		if k < 0 || l > uint64(left) {
			return 0, corrupt(m.ProtoName(), num)
		}
		size = uint64(n+k) + l
	} else if l := skipValue(b[n:], typ); l >= 0 {
		size = uint64(n + l)
	}
	if size == 0 || size > uint64(left) {
		return 0, corrupt(m.ProtoName(), num)
	}
	return int(size), nil
}

// eachField calls f for each field of b, an encoding of m, with its
// number, wire type, encoding (key and value) and, of wire type 2, its
// value's bytes.
func eachField(b []byte, m Message, f func(num int32, typ int, all, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return corrupt(m.ProtoName(), 0)
		}
		var value []byte
		var l int
		if typ == 2 {
			value, l = consumeBytes(b[n:])
		} else {
			l = skipValue(b[n:], typ)
		}
		if l < 0 {
			return corrupt(m.ProtoName(), num)
		}
		if err := f(num, typ, b[:n+l], value); err != nil {
			return err
		}
		b = b[n+l:]
	}
	return nil
}

// Complete sets every required field m lacks, in it and the messages it
// holds, to its default: for tests that spell out only the fields they
// check.
func Complete(m Message) { complete(m) }

// Clone returns a deep copy of m.
func Clone[T any, P interface {
	*T
	Message
}](m P) P {
	c := P(new(T))
	if m != nil {
		unmarshalMsg(appendMsg(make([]byte, 0, sizeOf(m)), m), c) // its own encoding: cannot fail
	}
	return c
}

// Bool returns a pointer to a copy of v, for a message's field.
func Bool(v bool) *bool { return &v }

// Int32 returns a pointer to a copy of v, for a message's field.
func Int32(v int32) *int32 { return &v }

// Int64 returns a pointer to a copy of v, for a message's field.
func Int64(v int64) *int64 { return &v }

// Uint32 returns a pointer to a copy of v, for a message's field.
func Uint32(v uint32) *uint32 { return &v }

// Uint64 returns a pointer to a copy of v, for a message's field.
func Uint64(v uint64) *uint64 { return &v }

// String returns a pointer to a copy of v, for a message's field.
func String(v string) *string { return &v }
