package pb

import (
	"encoding/binary"
	"math/bits"
)

// The protobuf wire format's primitives. A consume function returns the
// value and the bytes it took, or a negative count on truncated or
// malformed input.

func sizeVarint(v uint64) int { return 1 + (bits.Len64(v|1)-1)/7 }

func sizeBytes(n int) int { return sizeVarint(uint64(n)) + n }

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendFixed64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func appendFixed32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1 // most keys and many values
	}
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1 // overflows 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

func consumeFixed64(b []byte) (uint64, int) {
	if len(b) < 8 {
		return 0, -1
	}
	return binary.LittleEndian.Uint64(b), 8
}

func consumeFixed32(b []byte) (uint64, int) {
	if len(b) < 4 {
		return 0, -1
	}
	return uint64(binary.LittleEndian.Uint32(b)), 4
}

func consumeBytes(b []byte) ([]byte, int) {
	l, n := consumeVarint(b)
	if n < 0 || l > uint64(len(b)-n) {
		return nil, -1
	}
	return b[n : n+int(l)], n + int(l)
}

// consumeTag reads a field's key: its number (1 to 2^29-1) and wire type.
func consumeTag(b []byte) (num int32, typ int, n int) {
	v, n := consumeVarint(b)
	if n < 0 || v>>3 == 0 || v>>3 > 1<<29-1 {
		return 0, 0, -1
	}
	return int32(v >> 3), int(v & 7), n
}

// skipValue steps over a value of wire type typ, of a field the message
// does not know. Groups, deprecated and absent from CRIU's messages, are
// refused.
func skipValue(b []byte, typ int) int {
	switch typ {
	case 0:
		_, n := consumeVarint(b)
		return n
	case 1:
		_, n := consumeFixed64(b)
		return n
	case 2:
		_, n := consumeBytes(b)
		return n
	case 5:
		_, n := consumeFixed32(b)
		return n
	}
	return -1
}
