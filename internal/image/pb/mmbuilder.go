package pb

import "github.com/cryo-cr/cryo/internal/chunked"

// MmBuilder is an mm_entry whose VMAs are kept encoded as they are added:
// a dump of many mappings holds them in a third of the memory they take
// as structs (60,000 VMAs: 1.9 MB, not 6). It encodes as the mm_entry
// with its Vmas followed by the added ones.
type MmBuilder struct {
	MmEntry
	vmas chunked.Bytes // vmas elements of an mm_entry, encoded
	n    int
}

// MmVmasField is the number of mm_entry's field vmas (mm.proto), which
// MmBuilder writes and a reader may take one at a time
// (UnmarshalEachAt).
const MmVmasField = 14

// mmVmasTag is the key of mm_entry's vmas: the field, of wire type 2.
const mmVmasTag = MmVmasField<<3 | 2

// AddVma appends e to the VMAs. (A vma_entry cannot lack a required
// field: they are all values, always encoded.)
func (m *MmBuilder) AddVma(e *VmaEntry) {
	n := sizeOf(e)
	c := m.vmas.Tail(1 + sizeBytes(n))
	*c = appendVarint(*c, mmVmasTag)
	*c = appendVarint(*c, uint64(n))
	*c = appendMsg(*c, e)
	m.n++
}

// AddedVmas is how many VMAs AddVma added.
func (m *MmBuilder) AddedVmas() int { return m.n }

// ProtoName returns the protobuf name of what m encodes as.
func (*MmBuilder) ProtoName() string { return "mm_entry" }

// Reset clears m.
func (m *MmBuilder) Reset() { *m = MmBuilder{} }

func (m *MmBuilder) size() int { return sizeOf(&m.MmEntry) + m.vmas.Len() }

func (m *MmBuilder) appendTo(b []byte) []byte {
	b = m.appendHead(b)
	for _, c := range m.tail() {
		b = append(b, c...)
	}
	return b
}

func (m *MmBuilder) appendHead(b []byte) []byte { return appendMsg(b, &m.MmEntry) }

func (m *MmBuilder) tail() [][]byte { return m.vmas.Chunks() }

// unmarshal decodes an mm_entry, whose VMAs become the added ones.
func (m *MmBuilder) unmarshal(b []byte) error {
	if err := unmarshalMsg(b, &m.MmEntry); err != nil {
		return err
	}
	vmas := m.Vmas
	m.Vmas = nil
	for _, e := range vmas {
		m.AddVma(e)
	}
	return nil
}
