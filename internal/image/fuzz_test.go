package image

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

var update = flag.Bool("update", false, "rewrite the seed images in testdata/")

// seed is an image file in testdata/: the fuzz corpus, and a golden copy of
// what the Writer produces.
type seed struct {
	file string
	kind Kind
	data []byte
	want error // what reading it to the end gives; nil for a valid image
}

func seeds(t *testing.T) []seed {
	t.Helper()
	enc := map[Kind][]byte{}
	var ss []seed
	for _, s := range samples() {
		switch s.kind {
		case Inventory, Core, MM, Pagemap, Fdinfo, PipesData, GhostFile, FileStats, SockExtras, ThreadExtras, IOUrings:
			enc[s.kind] = encode(t, s)
			ss = append(ss, seed{s.kind.FileName(s.id), s.kind, enc[s.kind], nil})
		}
	}
	core, pipes := enc[Core], enc[PipesData]
	return append(ss,
		seed{"bad-magic.img", MM, cat(le(imgCommon, kinds[Core].magic), core[8:]), ErrMagic},
		seed{"truncated-header.img", MM, enc[MM][:6], ErrTruncated},
		seed{"truncated-length.img", Core, cat(core, []byte{0x10, 0}), ErrTruncated},
		seed{"truncated-record.img", Core, core[:len(core)-10], ErrTruncated},
		seed{"huge-length.img", Core, cat(core[:8], le(0xfffffff0), core[12:]), ErrTooLarge},
		seed{"truncated-payload.img", PipesData, pipes[:len(pipes)-2], ErrTruncated},
	)
}

func TestSeedCorpus(t *testing.T) {
	for _, s := range seeds(t) {
		path := filepath.Join("testdata", s.file)
		if *update {
			if err := os.WriteFile(path, s.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestSeedCorpus -update writes it)", err)
		}
		if !bytes.Equal(got, s.data) {
			t.Errorf("%s differs from what the Writer produces now (-update rewrites it)", path)
		}
		if _, err := parse(s.kind, got); !errors.Is(err, s.want) {
			t.Errorf("%s: %v, want %v", path, err, s.want)
		}
	}
}

// parsed is a record and its payload as read.
type parsed struct {
	msg     pb.Message
	payload []byte
}

// parse reads in as an image of kind k to its end, each record as the type
// it must have there, and returns the first error other than io.EOF.
func parse(k Kind, in []byte) ([]parsed, error) {
	r, err := NewReader(bytes.NewReader(in), k, k.FileName(1))
	if err != nil {
		return nil, err
	}
	var recs []parsed
	for {
		m := newMessage(k)
		switch {
		case k == Pagemap && len(recs) > 0:
			m = &pb.PagemapEntry{}
		case k == GhostFile && len(recs) > 0:
			m = &pb.GhostChunkEntry{}
		}
		if err := r.Next(m); err == io.EOF {
			return recs, nil
		} else if err != nil {
			return recs, err
		}
		p, err := io.ReadAll(r.Payload())
		if err != nil {
			return recs, err
		}
		recs = append(recs, parsed{m, p})
	}
}

func FuzzReader(f *testing.F) {
	files, err := filepath.Glob("testdata/*.img")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed images in testdata/: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(2*psize))
	}
	f.Fuzz(func(t *testing.T, in []byte, pagesSize uint32) {
		for k := Inventory; int(k) < len(kinds); k++ {
			if !k.raw() {
				fuzzKind(t, k, in)
			}
		}
		fuzzPages(t, in, int(pagesSize%(1<<20)))
	})
}

// fuzzKind checks that in, read as an image of kind k, either fails with
// one of our errors or, written back by the Writer, reads the same again.
func fuzzKind(t *testing.T, k Kind, in []byte) {
	recs, err := parse(k, in)
	if err != nil {
		if !errors.Is(err, ErrMagic) && !errors.Is(err, ErrTruncated) &&
			!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrRecord) {
			t.Fatalf("%v: unclassified error: %v", k, err)
		}
		return
	}
	var b bytes.Buffer
	w, err := NewWriter(&b, k, "again")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r.msg); err != nil {
			t.Fatalf("%v: rewrite %v: %v", k, r.msg, err)
		}
		if len(r.payload) > 0 {
			if err := w.WritePayload(r.payload); err != nil {
				t.Fatalf("%v: rewrite payload: %v", k, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := parse(k, b.Bytes())
	if err != nil {
		t.Fatalf("%v: reading the rewritten image: %v", k, err)
	}
	if len(again) != len(recs) {
		t.Fatalf("%v: %d records, %d after rewriting", k, len(recs), len(again))
	}
	for i := range recs {
		if !reflect.DeepEqual(recs[i].msg, again[i].msg) || !bytes.Equal(recs[i].payload, again[i].payload) {
			t.Fatalf("%v: record %d changed on rewriting: %v, now %v", k, i, recs[i].msg, again[i].msg)
		}
	}
}

// fuzzPages walks in as a pagemap over a pages file of size bytes: every
// entry it accepts must lie within the file.
func fuzzPages(t *testing.T, in []byte, size int) {
	pr, err := pageReader(in, make([]byte, size))
	if err != nil {
		return
	}
	var sum int64
	for {
		e, err := pr.Next()
		if err != nil {
			if err != io.EOF && !errors.Is(err, ErrPagemap) && !errors.Is(err, ErrTruncated) &&
				!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrRecord) {
				t.Fatalf("pagemap: unclassified error: %v", err)
			}
			return
		}
		n, err := io.Copy(io.Discard, pr.Data(e))
		if err != nil {
			t.Fatalf("entry %+v: %v", e, err)
		}
		if e.Flags&PEPresent != 0 && uint64(n) != e.NrPages*psize {
			t.Fatalf("entry %+v: %d bytes of data", e, n)
		}
		if sum += n; sum > int64(size) {
			t.Fatalf("entries claim %d bytes of a %d-byte pages file", sum, size)
		}
	}
}
