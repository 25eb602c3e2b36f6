package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// decode reads every record of s's kind from b, the way s's records say,
// and checks the image then ends.
func decode(t *testing.T, s sample, b []byte) []record {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b), s.kind, s.kind.FileName(s.id))
	if err != nil {
		t.Fatal(err)
	}
	var got []record
	for _, want := range s.recs {
		m := pb.New(want.msg.ProtoName())
		if err := r.Next(m); err != nil {
			t.Fatalf("record %d: %v", len(got), err)
		}
		rec := record{msg: m}
		if want.payload != nil {
			if rec.payload, err = io.ReadAll(r.Payload()); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, rec)
	}
	if err := r.Next(pb.New(s.recs[0].msg.ProtoName())); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.kind.String(), func(t *testing.T) {
			got := decode(t, s, encode(t, s))
			if d := cmp.Diff(s.recs, got, cmp.AllowUnexported(record{}), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		want []byte
	}{
		// The inventory has only its own magic; everything else is
		// prefixed by IMG_COMMON.
		{Inventory, []byte{0x16, 0x31, 0x31, 0x58}},
		{MM, []byte{0x19, 0x43, 0x56, 0x54, 0x20, 0x28, 0x49, 0x57}},
		{Pagemap, []byte{0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56}},
	} {
		var b bytes.Buffer
		w, err := NewWriter(&b, tc.kind, "x")
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, b.Bytes()); d != "" {
			t.Errorf("%v header (-want +got):\n%s", tc.kind, d)
		}
	}
}

// le returns the little-endian bytes of words.
func le(words ...uint32) []byte {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReaderErrors(t *testing.T) {
	fsHdr := le(imgCommon, kinds[FS].magic)
	okRec := func() []byte {
		b, err := pb.Marshal(complete(&pb.FsEntry{CwdId: 1}))
		if err != nil {
			t.Fatal(err)
		}
		return cat(le(uint32(len(b))), b)
	}()
	for _, tc := range []struct {
		name string
		kind Kind
		in   []byte
		want error
		msg  string // a part of the error text
	}{
		{"empty", FS, nil, ErrTruncated, "read fs-7.img: header at offset 0: truncated image"},
		{"header cut", FS, fsHdr[:6], ErrTruncated, "header at offset 4"},
		{"inventory header cut", Inventory, []byte{0x16, 0x31}, ErrTruncated, "header at offset 0"},
		{"other kind", FS, le(imgCommon, kinds[MM].magic), ErrMagic,
			"wrong magic 0x57492820 in fs-7.img, want 0x51403912 (fs)"},
		{"no common magic", FS, le(kinds[FS].magic, kinds[FS].magic), ErrMagic,
			"wrong magic 0x51403912 in fs-7.img, want 0x54564319 (fs)"},
		{"inventory as fs", FS, le(kinds[Inventory].magic, 0), ErrMagic, "wrong magic 0x58313116"},
		{"fs as inventory", Inventory, fsHdr, ErrMagic, "want 0x58313116 (inventory)"},
		{"length cut", FS, cat(fsHdr, okRec, []byte{1, 0}), ErrTruncated, "record length at offset 16"},
		{"record cut", FS, cat(fsHdr, le(10), []byte{8, 1}), ErrTruncated, "10-byte record at offset 12"},
		{"huge length", FS, cat(fsHdr, le(0xffffffff)), ErrTooLarge, "claims 4294967295 bytes"},
		{"just too long", FS, cat(fsHdr, le(MaxRecord+1)), ErrTooLarge, "limit 67108864"},
		{"bad wire format", FS, cat(fsHdr, le(2), []byte{0xff, 0xff}), ErrRecord, "fs_entry at offset 12"},
		{"required field missing", FS, cat(fsHdr, le(2), []byte{8, 1}), ErrRecord, "root_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readAll(tc.kind, "fs-7.img", tc.in)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

// readAll reads in as an image of kind k to its end, every record as k's
// first message type, and returns the first error other than io.EOF.
func readAll(k Kind, name string, in []byte) error {
	r, err := NewReader(bytes.NewReader(in), k, name)
	if err != nil {
		return err
	}
	for {
		if err := r.Next(newMessage(k)); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func TestPayload(t *testing.T) {
	var pipes sample
	for _, s := range samples() {
		if s.kind == PipesData {
			pipes = s
		}
	}
	full := encode(t, pipes)
	// The first record announces 5 bytes; cut the image after 2 of them.
	cut := full[:8+4+len(mustMarshal(t, pipes.recs[0].msg))+2]

	for _, tc := range []struct {
		name string
		in   []byte
		read int   // payload bytes to read after the first record
		want error // from reading the payload, then from the next Next
		next uint32
	}{
		{"skipped whole", full, 0, nil, 11},
		{"skipped in part", full, 2, nil, 11},
		{"read whole", full, 5, nil, 11},
		{"truncated, skipped", cut, 0, ErrTruncated, 0},
		{"truncated, read", cut, 5, ErrTruncated, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.in), PipesData, "pipes-data.img")
			if err != nil {
				t.Fatal(err)
			}
			var e pb.PipeDataEntry
			if err := r.Next(&e); err != nil {
				t.Fatal(err)
			}
			if tc.read > 0 {
				got, err := io.ReadAll(io.LimitReader(r.Payload(), int64(tc.read)))
				if !errors.Is(err, tc.want) {
					t.Fatalf("payload: %v, want %v", err, tc.want)
				}
				if want := "hello"[:len(got)]; string(got) != want {
					t.Errorf("payload %q, want %q", got, want)
				}
			}
			err = r.Next(&e)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Errorf("Next: %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || e.GetPipeId() != tc.next {
				t.Fatalf("Next: %v, %v; want pipe %d", &e, err, tc.next)
			}
			if err := r.Next(&e); err != io.EOF {
				t.Errorf("end: %v, want io.EOF", err)
			}
		})
	}

	t.Run("none", func(t *testing.T) {
		r, err := NewReader(bytes.NewReader(encode(t, samples()[0])), Inventory, "inventory.img")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Next(newMessage(Inventory)); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(r.Payload()); len(b) != 0 || err != nil {
			t.Errorf("payload of an inventory: %q, %v", b, err)
		}
	})
}

func TestGhostRest(t *testing.T) {
	// A ghost file without chunks: its contents are the rest of the image.
	var b bytes.Buffer
	w, err := NewWriter(&b, GhostFile, "ghost-file-1.img")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(complete(&pb.GhostFileEntry{Mode: 0o100644})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"all ", "the ", "rest"} {
		if err := w.WritePayload([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(complete(&pb.GhostChunkEntry{})); err == nil {
		t.Error("Write after a rest-of-image payload: no error")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&b, GhostFile, "ghost-file-1.img")
	if err != nil {
		t.Fatal(err)
	}
	var g pb.GhostFileEntry
	if err := r.Next(&g); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r.Payload()); string(got) != "all the rest" || err != nil {
		t.Errorf("payload %q, %v", got, err)
	}
	if err := r.Next(&g); err != io.EOF {
		t.Errorf("end: %v, want io.EOF", err)
	}
}

func TestWriterPayloadAccounting(t *testing.T) {
	announce := func(t *testing.T) *Writer {
		t.Helper()
		w, err := NewWriter(io.Discard, PipesData, "pipes-data.img")
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(complete(&pb.PipeDataEntry{Bytes: 4})); err != nil {
			t.Fatal(err)
		}
		return w
	}
	t.Run("too long", func(t *testing.T) {
		w := announce(t)
		if err := w.WritePayload([]byte("12345")); err == nil {
			t.Error("5 bytes after a record that announces 4: no error")
		}
	})
	t.Run("short at Write", func(t *testing.T) {
		w := announce(t)
		w.WritePayload([]byte("12"))
		err := w.Write(complete(&pb.PipeDataEntry{}))
		if err == nil || !strings.Contains(err.Error(), "short by 2 bytes") {
			t.Errorf("Write: %v", err)
		}
	})
	t.Run("short at Close", func(t *testing.T) {
		w := announce(t)
		if err := w.Close(); err == nil || !strings.Contains(err.Error(), "short by 4 bytes") {
			t.Errorf("Close: %v", err)
		}
	})
	t.Run("in pieces", func(t *testing.T) {
		w := announce(t)
		for _, p := range []string{"1", "23", "4"} {
			if err := w.WritePayload([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
}

func mustMarshal(t *testing.T, m pb.Message) []byte {
	t.Helper()
	b, err := pb.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriterErrors(t *testing.T) {
	if _, err := NewWriter(io.Discard, Pages, "pages-1.img"); err == nil {
		t.Error("NewWriter(Pages): no error")
	}
	if _, err := NewReader(bytes.NewReader(nil), Pages, "pages-1.img"); err == nil {
		t.Error("NewReader(Pages): no error")
	}
	w, err := NewWriter(io.Discard, FS, "fs-1.img")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    pb.Message
		msg  string
	}{
		{"wrong type", complete(&pb.PstreeEntry{}), "write fs-1.img: pstree_entry records do not belong in fs images"},
	} {
		if err := w.Write(tc.m); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.msg)
		}
	}
	files, err := NewWriter(io.Discard, Files, "files.img")
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Write(&pb.FileEntry{Type: pb.FdTypes_PIPE, Id: 1, Entry: &pb.PipeEntry{Id: 1, PipeId: 2}}); err == nil || !strings.Contains(err.Error(), "fown") {
		t.Errorf("a pipe entry without its required fown: %v, want an error naming fown", err)
	}
	if err := w.WritePayload([]byte("x")); err == nil {
		t.Error("WritePayload on an fs image: no error")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(complete(&pb.FsEntry{})); err == nil {
		t.Error("Write after Close: no error")
	}
	if err := w.Close(); err == nil {
		t.Error("second Close: no error")
	}
}

func TestWriterStickyError(t *testing.T) {
	w, err := NewWriter(failWriter{}, FS, "fs-1.img")
	if err != nil {
		t.Fatal(err)
	}
	// The header sits in the buffer; the failure shows at Close, and
	// then on every call.
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "write fs-1.img: disk full") {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Write(complete(&pb.FsEntry{})); err == nil {
		t.Error("Write after a failed Close: no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
