package image

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// dirtyPages returns how many pages of the file at path are dirty or under
// writeback in the page cache.
func dirtyPages(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			t.Skip("no cachestat (Linux 6.5+)")
		}
		t.Fatal(err)
	}
	return st.Dirty + st.Writeback
}

// TestPagesFlushInBackground: a pages file of flushEvery bytes or more is
// made durable while it is written and after its last write, without
// waiting for Sync; a smaller one waits for Sync. Either reads back, and
// crit decodes its pagemap.
func TestPagesFlushInBackground(t *testing.T) {
	crit(t)
	dirPath := filepath.Join(t.TempDir(), "d")
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dirPath), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("tmpfs: nothing to flush, and its pages stay dirty")
	}
	d, err := Create(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	const base = 0x7f0000000000
	chunk := pages(256, 9)
	n := 2*flushEvery/len(chunk) + 1
	big, err := d.CreatePages(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	small, err := d.CreatePages(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := small.WritePages(base, chunk); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		// A hole between chunks: each is an entry of its own.
		if err := big.WritePages(base+uint64(2*i*len(chunk)), chunk); err != nil {
			t.Fatal(err)
		}
	}
	if big.ff.kick == nil {
		t.Errorf("%d bytes written: no background flush", n*len(chunk))
	}
	if small.ff.kick != nil {
		t.Errorf("%d bytes written: a background flush", len(chunk))
	}
	for _, pw := range []*PageWriter{big, small} {
		if err := pw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	d.flushing.Wait()
	if n := dirtyPages(t, filepath.Join(dirPath, "pages-1.img")); n != 0 {
		t.Errorf("pages-1.img: %d pages dirty or under writeback after its flush", n)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}

	for pid, want := range map[uint32]int{1: n, 2: 1} {
		r, err := d.OpenPages(pid)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(r.Data(e))
			if err != nil {
				t.Fatal(err)
			}
			if e.Vaddr != base+uint64(2*got*len(chunk)) || !bytes.Equal(data, chunk) {
				t.Errorf("pid %d entry %d: %d bytes at %#x, not the chunk written", pid, got, len(data), e.Vaddr)
			}
			got++
		}
		r.Close()
		if got != want {
			t.Errorf("pid %d: %d entries, want %d", pid, got, want)
		}
		out := runCrit(t, "decode", "-i", filepath.Join(dirPath, Pagemap.FileName(pid)))
		if c := strings.Count(out, `"nr_pages": 256`); c != want {
			t.Errorf("crit decode of the pagemap of pid %d: %d entries of 256 pages, want %d:\n%s", pid, c, want, out)
		}
	}
}

// TestSyncFlushError: an error of a background flush, which the later
// fsync by name would not see, fails Sync.
func TestSyncFlushError(t *testing.T) {
	d, err := Create(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	// A pipe cannot be fdatasynced: EINVAL, as a real file gives EIO.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go io.Copy(io.Discard, r)
	ff := &flushingFile{f: w, d: d}
	if _, err := ff.Write(make([]byte, flushEvery)); err != nil {
		t.Fatal(err)
	}
	ff.finish()
	w.Close()
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "flush") || !errors.Is(err, unix.EINVAL) {
		t.Errorf("Sync after a failed flush: %v", err)
	}
}
