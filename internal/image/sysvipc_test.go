package image

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
)

// TestSysvIPCRoundTrip writes semaphore sets and message queues and reads
// them back, values and messages whole, and the sample images as crit
// knows them (samples_test.go) the same way.
func TestSysvIPCRoundTrip(t *testing.T) {
	desc := func(id uint32) *pb.IpcDescEntry {
		return complete(&pb.IpcDescEntry{Id: id, Key: id + 100, Mode: 0o640}).(*pb.IpcDescEntry)
	}
	sets := []SemSet{
		{Entry: &pb.IpcSemEntry{Desc: desc(1), Nsems: 5}, Values: []uint16{1, 2, 3, 4, 32767}},
		{Entry: &pb.IpcSemEntry{Desc: desc(2), Nsems: 4}, Values: []uint16{0, 0, 0, 9}},
	}
	queues := []MsgQueue{
		{Entry: &pb.IpcMsgEntry{Desc: desc(3), Qbytes: 16384}, Msgs: []Msg{
			{Type: 7, Text: []byte("hello")}, {Type: 1, Text: []byte{}}, {Type: 1 << 40, Text: bytes.Repeat([]byte{0xa5}, 8193)},
		}},
		{Entry: &pb.IpcMsgEntry{Desc: desc(4), Qbytes: 10}},
	}
	d, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSemSets(d, 4, sets); err != nil {
		t.Fatal(err)
	}
	if err := WriteMsgQueues(d, 4, queues); err != nil {
		t.Fatal(err)
	}
	r, err := d.Open(IpcSem, 4)
	if err != nil {
		t.Fatal(err)
	}
	gotSets, err := ReadSemSets(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if d := cmp.Diff(sets, gotSets); d != "" {
		t.Errorf("semaphore sets (-written +read):\n%s", d)
	}
	if r, err = d.Open(IpcMsg, 4); err != nil {
		t.Fatal(err)
	}
	gotQueues, err := ReadMsgQueues(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	queues[1].Msgs = nil
	if d := cmp.Diff(queues, gotQueues, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); d != "" {
		t.Errorf("message queues (-written +read):\n%s", d)
	}
	if gotQueues[0].Entry.GetQnum() != 3 {
		t.Errorf("qnum %d, want 3", gotQueues[0].Entry.GetQnum())
	}
}

// sysvIPCSeeds are the sample images of semaphore sets and message
// queues, and ones cut short.
func sysvIPCSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, s := range samples() {
		if s.kind == IpcSem || s.kind == IpcMsg {
			b := encode(t, s)
			out = append(out, b, b[:len(b)-3])
		}
	}
	return out
}

// TestSysvIPCShort checks that images cut short are refused.
func TestSysvIPCShort(t *testing.T) {
	seeds := sysvIPCSeeds(t)
	for i, k := range []Kind{IpcSem, IpcMsg} {
		if err := readSysvIPC(k, seeds[2*i]); err != nil {
			t.Errorf("%v sample: %v", k, err)
		}
		if err := readSysvIPC(k, seeds[2*i+1]); !errors.Is(err, ErrTruncated) {
			t.Errorf("%v cut short: %v, want %v", k, err, ErrTruncated)
		}
	}
}

func readSysvIPC(k Kind, in []byte) error {
	r, err := NewReader(bytes.NewReader(in), k, k.FileName(4))
	if err != nil {
		return err
	}
	if k == IpcSem {
		_, err = ReadSemSets(r)
	} else {
		_, err = ReadMsgQueues(r)
	}
	return err
}

func FuzzReadSysvIPC(f *testing.F) {
	for _, b := range sysvIPCSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, k := range []Kind{IpcSem, IpcMsg} {
			err := readSysvIPC(k, in)
			if err != nil && !errors.Is(err, ErrMagic) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) &&
				!errors.Is(err, ErrRecord) && !errors.Is(err, ErrCount) {
				t.Fatalf("%v: unclassified error: %v", k, err)
			}
		}
	})
}
