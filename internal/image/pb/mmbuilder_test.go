package pb

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMmBuilder checks that an MmBuilder encodes as the mm_entry holding
// its Vmas and then the added ones, in order, and decodes back.
func TestMmBuilder(t *testing.T) {
	vma := func(start uint64) *VmaEntry {
		return &VmaEntry{Start: start, End: start + 0x1000, Prot: 3, Flags: 0x22, Status: 0x21, Fd: -1}
	}
	withMadv := vma(0x5000)
	withMadv.Madv = Uint64(1 << 14)
	m := &MmBuilder{MmEntry: MmEntry{MmStartCode: 0x400000, MmBrk: 0x600000, ExeFileId: 7,
		Vmas: []*VmaEntry{vma(0x1000)}, Dumpable: Int32(1), ThpDisabled: Bool(true)}}
	added := []*VmaEntry{vma(0x3000), withMadv}
	for i := range 10000 { // chunks of every size
		added = append(added, vma(uint64(0x10000+i)<<12))
	}
	for _, e := range added {
		m.AddVma(e)
	}
	if m.AddedVmas() != len(added) {
		t.Errorf("AddedVmas() = %d, want %d", m.AddedVmas(), len(added))
	}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != Size(m) {
		t.Errorf("encoded %d bytes, Size says %d", len(b), Size(m))
	}
	head, pieces, err := AppendMarshalHead(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) < 2 {
		t.Errorf("AppendMarshalHead gave %d pieces; the added VMAs span several chunks", len(pieces))
	}
	if joined := bytes.Join(append([][]byte{head}, pieces...), nil); !bytes.Equal(joined, b) {
		t.Errorf("AppendMarshalHead's head and pieces (%d bytes) differ from Marshal's %d", len(joined), len(b))
	}
	var got MmEntry
	if err := Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := m.MmEntry
	want.Vmas = append([]*VmaEntry{vma(0x1000)}, added...)
	if diff := cmp.Diff(&want, &got); diff != "" {
		t.Errorf("decoded mm_entry differs (-want +got):\n%s", diff)
	}
	var back MmBuilder
	if err := Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.AddedVmas() != len(want.Vmas) || len(back.Vmas) != 0 {
		t.Errorf("decoded into an MmBuilder: %d added, %d Vmas; want %d and 0", back.AddedVmas(), len(back.Vmas), len(want.Vmas))
	}
}
