package pb

// Message is one of the package's messages.
type Message interface {
	// ProtoName returns the message's name in CRIU's .proto files
	// (vma_entry), or cryo.NAME for cryo's own.
	ProtoName() string
	// Reset clears every field.
	Reset()

	size() int
	appendTo(b []byte) []byte
	unmarshal(b []byte) error
	checkRequired() error
	complete()
}

// Size returns the length of m's encoding.
func Size(m Message) int { return m.size() }

// Marshal encodes m; it fails if m, or a message in it, lacks a required
// field.
func Marshal(m Message) ([]byte, error) { return AppendMarshal(nil, m) }

// AppendMarshal appends m's encoding to b; it fails if m, or a message in
// it, lacks a required field.
func AppendMarshal(b []byte, m Message) ([]byte, error) {
	if err := m.checkRequired(); err != nil {
		return b, err
	}
	return m.appendTo(b), nil
}

// Unmarshal decodes b into m, cleared first; it fails on bytes that do
// not follow the wire format and on a message that lacks a required
// field. Fields it does not know are skipped.
func Unmarshal(b []byte, m Message) error {
	m.Reset()
	if err := m.unmarshal(b); err != nil {
		return err
	}
	return m.checkRequired()
}

// UnmarshalEach decodes b into m as Unmarshal does, except the elements
// of m's repeated message field number field: it decodes each into elem,
// cleared first, and calls f with its index and the number of elements,
// and m keeps none of them. A caller that keeps what it needs of each
// holds no message per element (the 60,000 VMAs of an mm image took 5.1
// MB as messages of their own), and can size what it keeps at once.
func UnmarshalEach(b []byte, m Message, field int32, elem Message, f func(i, n int)) error {
	n := 0
	err := eachField(b, m, func(num int32, typ int, _, _ []byte) error {
		if num == field && typ == 2 {
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.Reset()
	var rest []byte // m's other fields
	i := 0
	err = eachField(b, m, func(num int32, typ int, all, value []byte) error {
		if num != field || typ != 2 {
			rest = append(rest, all...)
			return nil
		}
		if err := Unmarshal(value, elem); err != nil {
			return err
		}
		f(i, n)
		i++
		return nil
	})
	if err != nil {
		return err
	}
	if err := m.unmarshal(rest); err != nil {
		return err
	}
	return m.checkRequired()
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
func Complete(m Message) { m.complete() }

// Clone returns a deep copy of m.
func Clone[T any, P interface {
	*T
	Message
}](m P) P {
	c := P(new(T))
	if m != nil {
		c.unmarshal(m.appendTo(make([]byte, 0, m.size()))) // its own encoding: cannot fail
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
