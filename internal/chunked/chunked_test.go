package chunked

import (
	"bytes"
	"testing"
)

// TestBytes appends records of every size up to past the largest chunk:
// the chunks give them back in order, each record whole in one chunk,
// and no chunk grows past what its first allocation held.
func TestBytes(t *testing.T) {
	var b Bytes
	var want []byte
	var records [][]byte
	for i := range 3000 {
		n := i % 70
		if i == 2000 {
			n = maxChunk + 10 // larger than any chunk
		}
		r := bytes.Repeat([]byte{byte(i)}, n)
		records = append(records, r)
		want = append(want, r...)
		c := b.Tail(len(r))
		before := cap(*c)
		*c = append(*c, r...)
		if cap(*c) != before {
			t.Fatalf("record %d of %d bytes: the chunk grew from %d", i, n, before)
		}
	}
	if got := bytes.Join(b.Chunks(), nil); !bytes.Equal(got, want) {
		t.Fatalf("the chunks hold %d bytes, not the %d appended", len(got), len(want))
	}
	if b.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", b.Len(), len(want))
	}
	for i, c := range b.Chunks() {
		if i > 0 && cap(c) > maxChunk && len(c) != maxChunk+10 {
			t.Errorf("chunk %d: capacity %d", i, cap(c))
		}
	}
	if cap(b.Chunks()[0]) != firstChunk {
		t.Errorf("first chunk: capacity %d, want %d", cap(b.Chunks()[0]), firstChunk)
	}
}
