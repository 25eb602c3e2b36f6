package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Encode returns the bytes of v, one of the structs mirrored here (or a
// fixed-size value of x/sys, such as unix.Rlimit), laid out as the kernel
// reads it.
func Encode(v any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("kernel: %T is not a fixed-size struct: %v", v, err))
	}
	return b.Bytes()
}

// Decode fills *v from the bytes the kernel wrote, which must be exactly
// its size.
func Decode(b []byte, v any) error {
	if n := binary.Size(v); n != len(b) {
		return fmt.Errorf("decode %T: %d bytes, want %d", v, len(b), n)
	}
	return binary.Read(bytes.NewReader(b), binary.LittleEndian, v)
}
