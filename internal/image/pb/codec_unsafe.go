package pb

import (
	"math"
	"slices"
	"unsafe"
)

// The codec: one encoder and one decoder for every message, driven by the
// message's table (tables_gen_unsafe.go, generated), which gives each field's
// number, kind, cardinality and offset in the struct. Code written out
// per message and field was 0.7 MB of cryo's 3.3 MB of machine code, and
// its PC tables as much again: every page of it a dump or a restore
// touches counts in its resident memory.

// kind is how a field's values are held in Go and on the wire.
type kind uint8

const (
	kBool     kind = iota // bool, varint
	kInt32                // int32 or an enum, varint of its 64-bit extension
	kSint32               // int32, zigzag varint
	kSfixed32             // int32, 4 bytes
	kUint32               // uint32, varint
	kFixed32              // uint32, 4 bytes
	kInt64                // int64, varint
	kSint64               // int64, zigzag varint
	kSfixed64             // int64, 8 bytes
	kUint64               // uint64, varint
	kFixed64              // uint64, 8 bytes
	kFloat                // float32, 4 bytes
	kDouble               // float64, 8 bytes
	kString               // string, length-delimited
	kBytes                // []byte, length-delimited
	kMessage              // a pointer to a message, length-delimited
)

// wire is the wire type of one value of kind k.
func (k kind) wire() int {
	switch k {
	case kSfixed64, kFixed64, kDouble:
		return 1
	case kString, kBytes, kMessage:
		return 2
	case kSfixed32, kFixed32, kFloat:
		return 5
	}
	return 0
}

// card is how a field holds its values in the struct.
type card uint8

const (
	cVal    card = iota // a required scalar, or string: the value itself, always encoded
	cPtr                // an optional scalar or string: a pointer, nil when unset
	cOpt                // bytes or a message: nil when unset
	cRep                // repeated, each value with its key
	cPacked             // repeated, the values in one length-delimited field
	cEntry              // a message of a Message field that holds one of several
)

// fieldInfo describes one field of a message.
type fieldInfo struct {
	off      uintptr // in the struct
	num      int32
	kind     kind
	card     card
	bit      uint8 // a cVal's bit in what decoding has seen
	required bool  // a cOpt that must not be nil
	msg      int16 // kMessage: the message's index in infos
	name     string
}

// msgInfo describes a message.
type msgInfo struct {
	name   string // full protobuf name
	fields []fieldInfo
	vals   uint64         // the bits of its cVal fields
	check  bool           // it can lack a required field, or hold a message that can
	new    func() Message // a new message, if one is ever a field
}

// ref is a message, as the codec sees it.
type ref struct {
	p  unsafe.Pointer
	mi *msgInfo
}

func sizeOf(m Message) int {
	r := m.msg()
	return r.mi.size(r.p)
}

func appendMsg(b []byte, m Message) []byte {
	r := m.msg()
	return r.mi.appendTo(b, r.p)
}

func unmarshalMsg(b []byte, m Message) error {
	r := m.msg()
	return r.mi.unmarshal(b, r.p)
}

func checkRequired(m Message) error {
	r := m.msg()
	return r.mi.checkRequired(r.p)
}

func complete(m Message) {
	r := m.msg()
	r.mi.complete(r.p)
}

// slice is the header of any slice.
type slice struct {
	data     unsafe.Pointer
	len, cap int
}

// elemSize is the size of one value of kind k in a slice.
func (k kind) elemSize() uintptr {
	switch k {
	case kBool:
		return 1
	case kInt32, kSint32, kSfixed32, kUint32, kFixed32, kFloat:
		return 4
	case kString:
		return unsafe.Sizeof("")
	case kBytes:
		return unsafe.Sizeof([]byte(nil))
	case kMessage:
		return unsafe.Sizeof(unsafe.Pointer(nil))
	}
	return 8
}

// each calls f with a pointer to each value of the repeated field at p.
func (f *fieldInfo) each(p unsafe.Pointer, fn func(v unsafe.Pointer)) {
	s := (*slice)(p)
	es := f.kind.elemSize()
	for i := range s.len {
		fn(unsafe.Add(s.data, uintptr(i)*es))
	}
}

// toWire reads the scalar of kind k at p as the wire holds it.
func (k kind) toWire(p unsafe.Pointer) uint64 {
	switch k {
	case kBool:
		if *(*bool)(p) {
			return 1
		}
		return 0
	case kInt32:
		return uint64(*(*int32)(p)) // sign-extended, as protobuf has it
	case kSfixed32:
		return uint64(uint32(*(*int32)(p)))
	case kSint32:
		v := *(*int32)(p)
		return uint64(uint32(v)<<1 ^ uint32(v>>31))
	case kUint32, kFixed32:
		return uint64(*(*uint32)(p))
	case kInt64, kSfixed64, kUint64, kFixed64:
		return *(*uint64)(p)
	case kSint64:
		v := *(*int64)(p)
		return uint64(v<<1) ^ uint64(v>>63)
	case kFloat:
		return uint64(math.Float32bits(*(*float32)(p)))
	case kDouble:
		return math.Float64bits(*(*float64)(p))
	}
	panic("pb: not a scalar kind")
}

// fromWire stores u, off the wire, as the scalar of kind k at p.
func (k kind) fromWire(p unsafe.Pointer, u uint64) {
	switch k {
	case kBool:
		*(*bool)(p) = u != 0
	case kInt32, kSfixed32:
		*(*int32)(p) = int32(u)
	case kSint32:
		*(*int32)(p) = int32(uint32(u)>>1) ^ -int32(u&1)
	case kUint32, kFixed32:
		*(*uint32)(p) = uint32(u)
	case kInt64, kSfixed64, kUint64, kFixed64:
		*(*uint64)(p) = u
	case kSint64:
		*(*int64)(p) = int64(u>>1) ^ -int64(u&1)
	case kFloat:
		*(*float32)(p) = math.Float32frombits(uint32(u))
	case kDouble:
		*(*float64)(p) = math.Float64frombits(u)
	}
}

// newScalar returns a new scalar of kind k holding u, off the wire.
func (k kind) newScalar(u uint64) unsafe.Pointer {
	var p unsafe.Pointer
	switch k.elemSize() {
	case 1:
		p = unsafe.Pointer(new(bool))
	case 4:
		p = unsafe.Pointer(new(uint32))
	default:
		p = unsafe.Pointer(new(uint64))
	}
	k.fromWire(p, u)
	return p
}

// appendScalar appends u, off the wire, to the repeated field of kind k
// at p.
func (k kind) appendScalar(p unsafe.Pointer, u uint64) {
	switch k.elemSize() {
	case 1:
		s := (*[]bool)(p)
		*s = append(*s, u != 0)
	case 4:
		s := (*[]uint32)(p)
		*s = append(*s, 0)
		k.fromWire(unsafe.Pointer(&(*s)[len(*s)-1]), u)
	default:
		s := (*[]uint64)(p)
		*s = append(*s, 0)
		k.fromWire(unsafe.Pointer(&(*s)[len(*s)-1]), u)
	}
}

// valueSize is the encoded size of the value of f at v, without its key.
func (f *fieldInfo) valueSize(v unsafe.Pointer) int {
	switch f.kind {
	case kBool:
		return 1
	case kString:
		return sizeBytes(len(*(*string)(v)))
	case kBytes:
		return sizeBytes(len(*(*[]byte)(v)))
	case kMessage:
		return sizeBytes(infos[f.msg].size(*(*unsafe.Pointer)(v)))
	}
	switch f.kind.wire() {
	case 1:
		return 8
	case 5:
		return 4
	}
	return sizeVarint(f.kind.toWire(v))
}

// appendValue appends the value of f at v, without its key.
func (f *fieldInfo) appendValue(b []byte, v unsafe.Pointer) []byte {
	switch f.kind {
	case kString:
		s := *(*string)(v)
		return append(appendVarint(b, uint64(len(s))), s...)
	case kBytes:
		s := *(*[]byte)(v)
		return append(appendVarint(b, uint64(len(s))), s...)
	case kMessage:
		mi, p := &infos[f.msg], *(*unsafe.Pointer)(v)
		return mi.appendTo(appendVarint(b, uint64(mi.size(p))), p)
	}
	switch f.kind.wire() {
	case 1:
		return appendFixed64(b, f.kind.toWire(v))
	case 5:
		return appendFixed32(b, uint32(f.kind.toWire(v)))
	}
	return appendVarint(b, f.kind.toWire(v))
}

// key is f's key with wire type w.
func (f *fieldInfo) key(w int) uint64 { return uint64(f.num)<<3 | uint64(w) }

// value returns a pointer to where f's value is at p (for a message, its
// pointer), or nil if it is unset.
func (f *fieldInfo) value(p unsafe.Pointer) unsafe.Pointer {
	switch {
	case f.card == cPtr:
		return *(*unsafe.Pointer)(p)
	case f.card == cEntry:
		m := *(*Message)(p)
		if m == nil || m.msg().mi != &infos[f.msg] {
			return nil
		}
		// The interface's second word, its pointer to the message.
		return unsafe.Add(p, unsafe.Sizeof(p))
	case f.card != cOpt:
	case f.kind == kBytes && *(*[]byte)(p) == nil, f.kind == kMessage && *(*unsafe.Pointer)(p) == nil:
		return nil
	}
	return p
}

func (mi *msgInfo) size(p unsafe.Pointer) (n int) {
	for i := range mi.fields {
		f := &mi.fields[i]
		fp := unsafe.Add(p, f.off)
		switch f.card {
		case cVal, cPtr, cOpt, cEntry:
			if v := f.value(fp); v != nil {
				n += sizeVarint(f.key(0)) + f.valueSize(v)
			}
		case cRep:
			k := sizeVarint(f.key(0))
			f.each(fp, func(v unsafe.Pointer) { n += k + f.valueSize(v) })
		case cPacked:
			if l := f.packedSize(fp); l > 0 {
				n += sizeVarint(f.key(0)) + sizeBytes(l)
			}
		}
	}
	return n
}

// packedSize is the size of the values of the packed field at p.
func (f *fieldInfo) packedSize(p unsafe.Pointer) (n int) {
	f.each(p, func(v unsafe.Pointer) { n += f.valueSize(v) })
	return n
}

func (mi *msgInfo) appendTo(b []byte, p unsafe.Pointer) []byte {
	for i := range mi.fields {
		f := &mi.fields[i]
		fp := unsafe.Add(p, f.off)
		switch f.card {
		case cVal, cPtr, cOpt, cEntry:
			if v := f.value(fp); v != nil {
				b = f.appendValue(appendVarint(b, f.key(f.kind.wire())), v)
			}
		case cRep:
			f.each(fp, func(v unsafe.Pointer) { b = f.appendValue(appendVarint(b, f.key(f.kind.wire())), v) })
		case cPacked:
			if (*slice)(fp).len > 0 {
				b = appendVarint(appendVarint(b, f.key(2)), uint64(f.packedSize(fp)))
				f.each(fp, func(v unsafe.Pointer) { b = f.appendValue(b, v) })
			}
		}
	}
	return b
}

// field returns the field of number num that a value of wire type typ
// can be, or nil: one the message does not know, to skip.
func (mi *msgInfo) field(num int32, typ int) *fieldInfo {
	// Most messages number their fields 1 to n, in order: a field is
	// then where its number says (a VMA's decoding spent a quarter of its
	// time looking for its fields).
	var f *fieldInfo
	if i := int(num) - 1; i >= 0 && i < len(mi.fields) && mi.fields[i].num == num {
		f = &mi.fields[i]
	} else if i := slices.IndexFunc(mi.fields, func(f fieldInfo) bool { return f.num == num }); i >= 0 {
		f = &mi.fields[i]
	} else {
		return nil
	}
	if typ == f.kind.wire() || typ == 2 && (f.card == cRep || f.card == cPacked) {
		return f
	}
	return nil
}

func (mi *msgInfo) unmarshal(b []byte, p unsafe.Pointer) error {
	var seen uint64
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return corrupt(mi.name, 0)
		}
		b = b[n:]
		f := mi.field(num, typ)
		if f == nil {
			if n = skipValue(b, typ); n < 0 {
				return corrupt(mi.name, num)
			}
			b = b[n:]
			continue
		}
		fp := unsafe.Add(p, f.off)
		if typ != 2 {
			u, n := consumeScalar(b, typ)
			if n < 0 {
				return corrupt(mi.name, num)
			}
			b = b[n:]
			f.store(fp, u)
			seen |= f.seen()
			continue
		}
		v, n := consumeBytes(b)
		if n < 0 {
			return corrupt(mi.name, num)
		}
		b = b[n:]
		if k := f.kind.wire(); k != 2 { // packed scalars
			for len(v) > 0 {
				u, n := consumeScalar(v, k)
				if n < 0 {
					return corrupt(mi.name, num)
				}
				v = v[n:]
				f.store(fp, u)
			}
			continue
		}
		if err := f.storeBytes(fp, v); err != nil {
			return err
		}
		seen |= f.seen()
	}
	if missed := mi.vals &^ seen; missed != 0 {
		for i := range mi.fields {
			if f := &mi.fields[i]; f.card == cVal && missed&f.seen() != 0 {
				return missing(mi.name, f.name)
			}
		}
	}
	return nil
}

// seen is f's bit in what decoding has seen, if it is a cVal.
func (f *fieldInfo) seen() uint64 {
	if f.card != cVal {
		return 0
	}
	return 1 << f.bit
}

// consumeScalar reads a value of wire type typ, 0, 1 or 5.
func consumeScalar(b []byte, typ int) (uint64, int) {
	switch typ {
	case 0:
		return consumeVarint(b)
	case 1:
		return consumeFixed64(b)
	}
	return consumeFixed32(b)
}

// store sets the scalar field f at p to u, off the wire, or appends it.
func (f *fieldInfo) store(p unsafe.Pointer, u uint64) {
	switch f.card {
	case cVal:
		f.kind.fromWire(p, u)
	case cPtr:
		*(*unsafe.Pointer)(p) = f.kind.newScalar(u)
	default:
		f.kind.appendScalar(p, u)
	}
}

// storeBytes sets the field f at p, a string, bytes or a message, to v,
// or appends it; a message already set is merged with v.
func (f *fieldInfo) storeBytes(p unsafe.Pointer, v []byte) error {
	rep := f.card == cRep
	switch f.kind {
	case kString:
		s := string(v)
		switch {
		case rep:
			l := (*[]string)(p)
			*l = append(*l, s)
		case f.card == cPtr:
			*(*unsafe.Pointer)(p) = unsafe.Pointer(&s)
		default:
			*(*string)(p) = s
		}
	case kBytes:
		c := append([]byte{}, v...)
		if rep {
			l := (*[][]byte)(p)
			*l = append(*l, c)
		} else {
			*(*[]byte)(p) = c
		}
	case kMessage:
		mi := &infos[f.msg]
		if rep {
			e := mi.new().msg().p
			if err := mi.unmarshal(v, e); err != nil {
				return err
			}
			l := (*[]unsafe.Pointer)(p)
			*l = append(*l, e)
			return nil
		}
		if f.card == cEntry {
			m := (*Message)(p)
			if *m == nil {
				*m = mi.new()
			} else if (*m).msg().mi != mi {
				return corrupt(mi.name, f.num) // a second entry, of another kind
			}
			return mi.unmarshal(v, (*m).msg().p)
		}
		e := (*unsafe.Pointer)(p)
		if *e == nil {
			*e = mi.new().msg().p
		}
		return mi.unmarshal(v, *e)
	}
	return nil
}

func (mi *msgInfo) checkRequired(p unsafe.Pointer) error {
	if !mi.check {
		return nil
	}
	for i := range mi.fields {
		f := &mi.fields[i]
		fp := unsafe.Add(p, f.off)
		if f.required && f.value(fp) == nil {
			return missing(mi.name, f.name)
		}
		if f.kind != kMessage || !infos[f.msg].check {
			continue
		}
		var err error
		check := func(v unsafe.Pointer) {
			if err == nil {
				err = infos[f.msg].checkRequired(*(*unsafe.Pointer)(v))
			}
		}
		if f.card == cRep {
			f.each(fp, check)
		} else if v := f.value(fp); v != nil {
			check(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (mi *msgInfo) complete(p unsafe.Pointer) {
	for i := range mi.fields {
		f := &mi.fields[i]
		fp := unsafe.Add(p, f.off)
		switch {
		case f.kind == kMessage && f.card == cRep:
			f.each(fp, func(v unsafe.Pointer) { infos[f.msg].complete(*(*unsafe.Pointer)(v)) })
		case f.card == cEntry:
			if v := f.value(fp); v != nil {
				infos[f.msg].complete(*(*unsafe.Pointer)(v))
			}
		case f.kind == kMessage:
			e := (*unsafe.Pointer)(fp)
			if f.required && *e == nil {
				*e = infos[f.msg].new().msg().p
			}
			if *e != nil {
				infos[f.msg].complete(*e)
			}
		case f.kind == kBytes && f.required && *(*[]byte)(fp) == nil:
			*(*[]byte)(fp) = []byte{}
		}
	}
}
