// Package chunked holds a long run of small records as bytes in chunks
// that are never copied as they grow. A slice grown by append allocates
// several times its final size and copies it on the way, which set the
// peak memory of a dump and of a restore of 60,000 VMAs.
package chunked

// The chunks double in size from the first to the largest: a few records
// take 1 KiB, and 60,000 VMAs about 40 chunks.
const firstChunk, maxChunk = 1 << 10, 64 << 10

// Bytes is bytes appended chunk by chunk. The zero value is empty.
type Bytes struct {
	chunks [][]byte
}

// Tail returns the last chunk, with at least n bytes free, for the caller
// to append at most n bytes to.
func (b *Bytes) Tail(n int) *[]byte {
	k := len(b.chunks)
	if k == 0 || cap(b.chunks[k-1])-len(b.chunks[k-1]) < n {
		size := firstChunk
		if k > 0 {
			size = min(2*cap(b.chunks[k-1]), maxChunk)
		}
		b.chunks = append(b.chunks, make([]byte, 0, max(n, size)))
		k++
	}
	return &b.chunks[k-1]
}

// Chunks returns the bytes appended, in order, a chunk at a time.
func (b *Bytes) Chunks() [][]byte { return b.chunks }

// Len is how many bytes were appended.
func (b *Bytes) Len() int {
	n := 0
	for _, c := range b.chunks {
		n += len(c)
	}
	return n
}
