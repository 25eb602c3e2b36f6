package image

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/google/go-cmp/cmp"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCreateDir(t *testing.T) {
	base := t.TempDir()
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(base, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(base, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "used"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("used/inventory.img")
	if err := os.Mkdir(filepath.Join(base, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("logs/dump.log")
	write("file")

	for _, tc := range []struct {
		name string
		want error // nil: success
		msg  string
	}{
		{"new", nil, ""},
		{"empty", nil, ""},
		{"logs", nil, ""},
		{"used", ErrNotEmpty, "already holds images (inventory.img)"},
		{"file", nil, "not a directory"},
		{"missing/new", fs.ErrNotExist, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(filepath.Join(base, tc.name))
			switch {
			case tc.msg == "" && err != nil:
				t.Fatalf("Create: %v", err)
			case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
				t.Fatalf("Create: %v, want an error containing %q", err, tc.msg)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Create: %v, want %v", err, tc.want)
			}
		})
	}
	if m := mode(t, filepath.Join(base, "new")); m != 0o700 {
		t.Errorf("new directory mode %v, want 0700", m)
	}
}

func TestDirImages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d")
	d, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a := complete(&pb.PstreeEntry{Pid: 1})
	b := complete(&pb.PstreeEntry{Pid: 2, Ppid: 1})
	f := complete(&pb.FsEntry{CwdId: 3, Umask: pb.Uint32(0o22)})
	if err := d.WriteImage(Pstree, 0, a, b); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteImage(FS, 1, f); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteImage(FS, 1, f); !errors.Is(err, fs.ErrExist) {
		t.Errorf("writing fs-1.img twice: %v, want fs.ErrExist", err)
	}
	if err := d.WriteImage(FS, 2); err != nil { // an image without records
		t.Fatal(err)
	}
	if _, err := d.Create(Pages, 1); err == nil {
		t.Error("Create(Pages): no error")
	}
	if _, err := os.Stat(filepath.Join(path, "pages-1.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create(Pages) left a file: %v", err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(path, "fs-1.img")); m != 0o600 {
		t.Errorf("image mode %v, want 0600", m)
	}

	d, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	all, err := ReadAll[pb.PstreeEntry](d, Pstree, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*pb.PstreeEntry{a.(*pb.PstreeEntry), b.(*pb.PstreeEntry)}, all); diff != "" {
		t.Errorf("ReadAll (-want +got):\n%s", diff)
	}
	var got pb.FsEntry
	if err := d.ReadImage(FS, 1, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, &got); diff != "" {
		t.Errorf("ReadImage (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"two records", d.ReadImage(Pstree, 0, &pb.PstreeEntry{}), ErrCount},
		{"no record", d.ReadImage(FS, 2, &got), ErrCount},
		{"missing", d.ReadImage(FS, 3, &got), fs.ErrNotExist},
		{"ReadAll missing", func() error { _, err := ReadAll[pb.FsEntry](d, FS, 3); return err }(), fs.ErrNotExist},
		{"wrong kind", func() error { _, err := ReadAll[pb.FsEntry](d, Pstree, 0); return err }(), nil},
	} {
		if tc.want == nil {
			if tc.err == nil {
				t.Errorf("%s: no error", tc.name)
			}
		} else if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}

	if _, err := Open(filepath.Join(path, "fs-1.img")); err == nil {
		t.Error("Open of a file: no error")
	}
	if _, err := Open(filepath.Join(path, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing directory: %v", err)
	}
}

func TestSync(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.Create(PipesData, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "1 images still open") {
		t.Errorf("Sync with an open image: %v", err)
	}
	// A record whose payload never comes: Close fails, and so must Sync.
	if err := w.Write(complete(&pb.PipeDataEntry{Bytes: 3})); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close with a missing payload: no error")
	}
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "short by 3 bytes") {
		t.Errorf("Sync after a failed Close: %v", err)
	}
}

// TestReadImageEach checks an mm image read with its VMAs handed over one
// at a time gives what ReadImage does, and the errors ReadImage gives.
func TestReadImageEach(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	mm := complete(&pb.MmEntry{ExeFileId: 5, MmSavedAuxv: []uint64{6, 4096}, Vmas: []*pb.VmaEntry{
		{Start: 0x1000, End: 0x3000, Madv: pb.Uint64(1 << 14)},
		{Start: 0x5000, End: 0x6000, Fdflags: pb.Uint32(2)},
		{Start: 0x7000, End: 0x8000},
	}})
	if err := d.WriteImage(MM, 1, mm); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteImage(MM, 2, mm, mm); err != nil {
		t.Fatal(err)
	}
	read := func(id uint32) (*pb.MmEntry, error) {
		var got pb.MmEntry
		var vma pb.VmaEntry
		var vmas []*pb.VmaEntry
		err := d.ReadImageEach(MM, id, &got, pb.MmVmasField, &vma, func(i int) {
			if i != len(vmas) {
				t.Errorf("VMA %d of %d handed over as %d", len(vmas), len(mm.(*pb.MmEntry).Vmas), i)
			}
			vmas = append(vmas, pb.Clone(&vma))
		})
		got.Vmas = vmas
		return &got, err
	}
	got, err := read(1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mm, got); diff != "" {
		t.Errorf("ReadImageEach (-want +got):\n%s", diff)
	}
	if _, err := read(2); !errors.Is(err, ErrCount) {
		t.Errorf("two records: %v, want %v", err, ErrCount)
	}
	if _, err := read(3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v, want %v", err, fs.ErrNotExist)
	}
	// Cut in its last VMA, and with its last varint unended.
	img, err := os.ReadFile(filepath.Join(d.path, MM.FileName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.path, MM.FileName(4)), img[:len(img)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(4); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated: %v, want %v", err, ErrTruncated)
	}
	img[len(img)-1] = 0x80
	if err := os.WriteFile(filepath.Join(d.path, MM.FileName(5)), img, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(5); !errors.Is(err, ErrRecord) {
		t.Errorf("corrupt: %v, want %v", err, ErrRecord)
	}
}

// TestRecordWriter writes an mm image's VMAs in parts, paused, two
// listings dropped (Restart), then its other fields: it reads as the
// mm_entry that holds them, whole and a VMA at a time, and crit reads the
// same.
func TestRecordWriter(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.CreateRecord(MM, 1)
	if err != nil {
		t.Fatal(err)
	}
	vma := func(i int) *pb.VmaEntry {
		return &pb.VmaEntry{Start: uint64(0x10000+2*i) << 12, End: uint64(0x10001+2*i) << 12, Fd: -1}
	}
	// Dropped with the header still in the buffer, then from the file.
	for _, pause := range []bool{false, true} {
		for i := range 100 {
			if err := r.Add(pb.MmVmasField, vma(-i)); err != nil {
				t.Fatal(err)
			}
		}
		if pause {
			if err := r.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	want := &pb.MmEntry{ExeFileId: 5, MmSavedAuxv: []uint64{6, 4096}, Dumpable: pb.Int32(1)}
	pb.Complete(want)
	for i := range 5000 {
		v := vma(i)
		if i == 4000 {
			v.Madv = pb.Uint64(1 << 14)
		}
		if err := r.Add(pb.MmVmasField, v); err != nil {
			t.Fatal(err)
		}
		want.Vmas = append(want.Vmas, v)
		if i%1000 == 0 {
			if err := r.Pause(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.Sync(); err == nil {
		t.Error("Sync with a record unfinished: no error")
	}
	head := *want
	head.Vmas = nil
	if err := r.Finish(&head); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(pb.MmVmasField, vma(0)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Add after Finish: %v, want %v", err, os.ErrClosed)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	var got pb.MmEntry
	if err := d.ReadImage(MM, 1, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("ReadImage (-want +got):\n%s", diff)
	}
	var each pb.MmEntry
	var v pb.VmaEntry
	n := 0
	err = d.ReadImageEach(MM, 1, &each, pb.MmVmasField, &v, func(i int) {
		if diff := cmp.Diff(want.Vmas[i], &v); diff != "" {
			t.Errorf("VMA %d (-want +got):\n%s", i, diff)
		}
		n++
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&head, &each); n != len(want.Vmas) || diff != "" {
		t.Errorf("ReadImageEach: %d VMAs, want %d; the rest (-want +got):\n%s", n, len(want.Vmas), diff)
	}
}
