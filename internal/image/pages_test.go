package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var psize = uint64(os.Getpagesize())

// pages returns n pages, each filled with its own byte starting at fill.
func pages(n int, fill byte) []byte {
	b := make([]byte, 0, n*int(psize))
	for i := range n {
		b = append(b, bytes.Repeat([]byte{fill + byte(i)}, int(psize))...)
	}
	return b
}

func TestPagesRoundTrip(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	const base = 0x7f0000000000
	writes := []struct {
		vaddr uint64
		data  []byte
	}{
		{base, pages(1, 1)},
		{base + psize, pages(2, 2)}, // adjacent: joins the first entry
		{base + 8*psize, pages(3, 4)},
		{base + 11*psize, nil}, // empty: ignored
		{base + 1<<30, pages(1, 7)},
	}
	pw, err := d.CreatePages(42, 3)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, w := range writes {
		if err := pw.WritePages(w.vaddr, w.data); err != nil {
			t.Fatal(err)
		}
		all = append(all, w.data...)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(filepath.Join(d.Path(), "pages-3.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, all) {
		t.Errorf("pages-3.img holds %d bytes, not the %d written", len(raw), len(all))
	}
	// What CRIU and crit read: the head, then entries with both counts.
	recs, err := readPagemap(t, d, 42)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(vaddr uint64, nr uint32) pb.Message {
		return &pb.PagemapEntry{Vaddr: vaddr, CompatNrPages: nr,
			NrPages: pb.Uint64(uint64(nr)), Flags: pb.Uint32(PEPresent)}
	}
	want := []pb.Message{
		&pb.PagemapHead{PagesId: 3},
		entry(base, 3), entry(base+8*psize, 3), entry(base+1<<30, 1),
	}
	if diff := cmp.Diff(want, recs); diff != "" {
		t.Errorf("pagemap (-want +got):\n%s", diff)
	}

	pr, err := d.OpenPages(42)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var got []PageEntry
	var data []byte
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
		b, err := io.ReadAll(pr.Data(e))
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	wantEntries := []PageEntry{
		{base, 3, PEPresent, 0},
		{base + 8*psize, 3, PEPresent, int64(3 * psize)},
		{base + 1<<30, 1, PEPresent, int64(6 * psize)},
	}
	if diff := cmp.Diff(wantEntries, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if !bytes.Equal(data, all) {
		t.Error("data read back differs from data written")
	}
}

// readPagemap returns the records of pagemap-pid.img.
func readPagemap(t *testing.T, d *Dir, pid uint32) ([]pb.Message, error) {
	t.Helper()
	r, err := d.Open(Pagemap, pid)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var m pb.Message = &pb.PagemapHead{}
	var recs []pb.Message
	for {
		if err := r.Next(m); err == io.EOF {
			return recs, nil
		} else if err != nil {
			return nil, err
		}
		recs = append(recs, m)
		m = &pb.PagemapEntry{}
	}
}

func TestPageWriterErrors(t *testing.T) {
	const base = 0x10000000
	for _, tc := range []struct {
		name  string
		vaddr uint64
		data  []byte
		msg   string
	}{
		{"unaligned address", base + 1, pages(1, 0), "not whole pages"},
		{"partial page", base + 4*psize, make([]byte, 100), "not whole pages"},
		{"overlap", base + psize, pages(1, 0), "ranges must ascend"},
		{"descending", base - psize, pages(1, 0), "ranges must ascend"},
		{"wraps", math.MaxUint64 - psize + 1, pages(2, 0), "ranges must ascend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Create(filepath.Join(t.TempDir(), "d"))
			if err != nil {
				t.Fatal(err)
			}
			pw, err := d.CreatePages(1, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close()
			if err := pw.WritePages(base, pages(2, 0)); err != nil {
				t.Fatal(err)
			}
			err = pw.WritePages(tc.vaddr, tc.data)
			if !errors.Is(err, ErrPagemap) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want ErrPagemap containing %q", err, tc.msg)
			}
		})
	}
}

func TestPageWriterSplitsHugeRuns(t *testing.T) {
	// A run longer than compat_nr_pages can count becomes several entries.
	var b bytes.Buffer
	pm, err := NewWriter(&b, Pagemap, "pagemap-1.img")
	if err != nil {
		t.Fatal(err)
	}
	p := &PageWriter{pm: pm, psize: psize, vaddr: 0, nr: math.MaxUint32 + 5}
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
	if err := pm.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&b, Pagemap, "pagemap-1.img")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for {
		var e pb.PagemapEntry
		if err := r.Next(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if uint64(e.GetCompatNrPages()) != e.GetNrPages() {
			t.Errorf("entry %#x: compat_nr_pages %d, nr_pages %d", e.GetVaddr(), e.GetCompatNrPages(), e.GetNrPages())
		}
		got = append(got, e.GetVaddr(), e.GetNrPages())
	}
	want := []uint64{0, math.MaxUint32, math.MaxUint32 * psize, 5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// pageReader builds a PageReader over an in-memory pagemap and pages file.
func pageReader(pm, pagesData []byte) (*PageReader, error) {
	r, err := NewReader(bytes.NewReader(pm), Pagemap, "pagemap-1.img")
	if err != nil {
		return nil, err
	}
	if _, err := readHead(r); err != nil {
		return nil, err
	}
	return &PageReader{pm: r, pages: bytes.NewReader(pagesData), size: int64(len(pagesData)),
		name: "pages-1.img", psize: psize}, nil
}

// pagemapImage frames a head and entries as a pagemap image.
func pagemapImage(t *testing.T, entries ...*pb.PagemapEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, Pagemap, "pagemap-1.img")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&pb.PagemapHead{PagesId: 1}); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(complete(e)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPageReader(t *testing.T) {
	const base = 0x400000
	ent := func(vaddr uint64, nr uint64, flags uint32) *pb.PagemapEntry {
		return &pb.PagemapEntry{Vaddr: vaddr, NrPages: pb.Uint64(nr), Flags: pb.Uint32(flags)}
	}
	for _, tc := range []struct {
		name    string
		entries []*pb.PagemapEntry
		pages   int // pages in the pages file
		want    []PageEntry
		err     string // the error after the wanted entries; "" for io.EOF
	}{
		{
			name: "old entries", pages: 2,
			// CRIU before 3.18: only compat_nr_pages; no flags means
			// present unless in_parent.
			entries: []*pb.PagemapEntry{
				{Vaddr: base, CompatNrPages: 2},
				{Vaddr: base + 4*psize, CompatNrPages: 1, InParent: pb.Bool(true)},
			},
			want: []PageEntry{{base, 2, PEPresent, 0}, {base + 4*psize, 1, PEParent, int64(2 * psize)}},
		},
		{
			name: "lazy and parent entries take no data", pages: 1,
			entries: []*pb.PagemapEntry{ent(base, 5, PELazy), ent(base+5*psize, 1, PEPresent), ent(base+6*psize, 2, PEParent)},
			want:    []PageEntry{{base, 5, PELazy, 0}, {base + 5*psize, 1, PEPresent, 0}, {base + 6*psize, 2, PEParent, int64(psize)}},
		},
		{
			name: "nr_pages wins", pages: 3,
			entries: []*pb.PagemapEntry{{Vaddr: base, CompatNrPages: 1, NrPages: pb.Uint64(3)}},
			want:    []PageEntry{{base, 3, PEPresent, 0}},
		},
		{name: "empty", pages: 0, entries: []*pb.PagemapEntry{ent(base, 0, PEPresent)}, err: "empty"},
		{name: "unaligned", pages: 1, entries: []*pb.PagemapEntry{ent(base+8, 1, PEPresent)}, err: "not page aligned"},
		{name: "overlap", pages: 3, entries: []*pb.PagemapEntry{ent(base, 2, PEPresent), ent(base+psize, 1, PEPresent)},
			want: []PageEntry{{base, 2, PEPresent, 0}}, err: "overlaps or precedes the previous entry"},
		{name: "past the address space", pages: 1, entries: []*pb.PagemapEntry{ent(math.MaxUint64-psize+1, 1, PEPresent)},
			err: "past the end of the address space"},
		{name: "huge count", pages: 1, entries: []*pb.PagemapEntry{ent(0, math.MaxUint64/2, PEPresent)},
			err: "past the end of the address space"},
		{name: "pages file short", pages: 1, entries: []*pb.PagemapEntry{ent(base, 2, PEPresent)},
			err: fmt.Sprintf("needs %d bytes at offset 0 of pages-1.img, which has %d", 2*psize, psize)},
		{name: "pages file long", pages: 2, entries: []*pb.PagemapEntry{ent(base, 1, PEPresent)},
			want: []PageEntry{{base, 1, PEPresent, 0}}, err: fmt.Sprintf("entries cover %d bytes of pages-1.img, which has %d", psize, 2*psize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := pageReader(pagemapImage(t, tc.entries...), make([]byte, tc.pages*int(psize)))
			if err != nil {
				t.Fatal(err)
			}
			var got []PageEntry
			for {
				e, err := pr.Next()
				if err == io.EOF && tc.err == "" {
					break
				}
				if err != nil {
					if tc.err == "" || !errors.Is(err, ErrPagemap) || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("Next: %v, want ErrPagemap containing %q", err, tc.err)
					}
					break
				}
				got = append(got, e)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenPagesErrors(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteImage(Pagemap, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.OpenPages(1); !errors.Is(err, ErrCount) {
		t.Errorf("pagemap without a head: %v, want ErrCount", err)
	}
	if err := d.WriteImage(Pagemap, 2, &pb.PagemapHead{PagesId: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.OpenPages(2); err == nil || !strings.Contains(err.Error(), "pages-9.img") {
		t.Errorf("missing pages file: %v", err)
	}
}

func BenchmarkPageWriter(b *testing.B) {
	chunk := pages(256, 0) // 1 MiB on 4 KiB pages
	const chunks = 64
	b.SetBytes(int64(len(chunk)) * chunks)
	for i := range b.N {
		d, err := Create(filepath.Join(b.TempDir(), fmt.Sprint(i)))
		if err != nil {
			b.Fatal(err)
		}
		pw, err := d.CreatePages(1, 1)
		if err != nil {
			b.Fatal(err)
		}
		// Every other chunk: a hole, so each chunk is its own entry.
		for c := range uint64(chunks) {
			if err := pw.WritePages(2*c*uint64(len(chunk)), chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := pw.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteRanges writes ranges back to back in one chunk: the pagemap
// and pages file are those of WritePages one range at a time; a chunk
// that ranges do not cover, or a range out of order, is refused with
// nothing written.
func TestWriteRanges(t *testing.T) {
	const base = 0x7f0000000000
	ranges := [][2]uint64{{base, psize}, {base + psize, 2 * psize}, {base + 8*psize, 0}, {base + 8*psize, 3 * psize}, {base + 1<<30, psize}}
	data := pages(7, 1)
	write := func(whole bool) (pagemap []pb.Message, raw []byte) {
		d, err := Create(filepath.Join(t.TempDir(), "d"))
		if err != nil {
			t.Fatal(err)
		}
		pw, err := d.CreatePages(42, 3)
		if err != nil {
			t.Fatal(err)
		}
		each := func(rs [][2]uint64) func(func(uint64, uint64) bool) {
			return func(yield func(uint64, uint64) bool) {
				for _, r := range rs {
					if !yield(r[0], r[1]) {
						return
					}
				}
			}
		}
		if whole {
			if err := pw.WriteRanges(data[2*psize:], each(ranges[1:])); err == nil {
				t.Error("WriteRanges of a chunk shorter than its ranges: no error")
			}
			if err := pw.WriteRanges(data, each([][2]uint64{ranges[1], ranges[0]})); !errors.Is(err, ErrPagemap) {
				t.Errorf("WriteRanges of descending ranges: %v, want ErrPagemap", err)
			}
			if err := pw.WriteRanges(data, each(ranges)); err != nil {
				t.Fatal(err)
			}
		} else {
			off := uint64(0)
			for _, r := range ranges {
				if err := pw.WritePages(r[0], data[off:off+r[1]]); err != nil {
					t.Fatal(err)
				}
				off += r[1]
			}
		}
		if err := pw.Close(); err != nil {
			t.Fatal(err)
		}
		if raw, err = os.ReadFile(filepath.Join(d.Path(), "pages-3.img")); err != nil {
			t.Fatal(err)
		}
		if pagemap, err = readPagemap(t, d, 42); err != nil {
			t.Fatal(err)
		}
		return pagemap, raw
	}
	wantMap, wantRaw := write(false)
	gotMap, gotRaw := write(true)
	if diff := cmp.Diff(wantMap, gotMap); diff != "" {
		t.Errorf("pagemap (-WritePages +WriteRanges):\n%s", diff)
	}
	if !bytes.Equal(gotRaw, wantRaw) || !bytes.Equal(gotRaw, data) {
		t.Errorf("pages file: %d bytes, want the %d written", len(gotRaw), len(data))
	}
}
