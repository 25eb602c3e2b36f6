package dump

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
)

const (
	pageSize = 4096
	// copyChunk is how much memory one process_vm_readv moves: large
	// enough that system calls are a small part of the cost, small enough
	// for cryo's own footprint.
	copyChunk = 4 << 20
	// maxIov is the kernel's IOV_MAX.
	maxIov = 1024
)

// pageStats counts what the page copy did.
type pageStats struct {
	pages uint64
}

// run is a range of pages to copy and how to read it.
type run struct {
	addr, n uint64 // n in bytes
	viaMem  bool
}

// pageRuns lists the pages to dump for each area, in address order.
func pageRuns(pagemap io.ReaderAt, areas []area) ([]run, error) {
	var runs []run
	for _, a := range areas {
		start, end := *a.e.Start, *a.e.End
		switch {
		case a.all:
			runs = append(runs, run{start, end - start, a.viaMem})
		case a.dump != nil:
			prs, err := proc.ReadPageRuns(pagemap, start, end, a.dump)
			if err != nil {
				return nil, fmt.Errorf("read pagemap of %#x-%#x: %w", start, end, err)
			}
			for _, r := range prs {
				runs = append(runs, run{r.Addr, r.Pages * pageSize, a.viaMem})
			}
		}
	}
	return runs, nil
}

// copyPages copies the runs from process pid into w, progress reporting
// bytes done after each chunk.
func copyPages(ctx context.Context, pid int, mem *os.File, runs []run, w *image.PageWriter, progress func(done uint64)) (pageStats, error) {
	var st pageStats
	buf := make([]byte, copyChunk)
	var done uint64
	for len(runs) > 0 {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		// Gather runs into one chunk; a run larger than the chunk is
		// split.
		var iov []unix.RemoteIovec
		var pieces []run
		filled := uint64(0)
		for len(runs) > 0 && filled < copyChunk && len(iov) < maxIov {
			r := runs[0]
			n := min(r.n, copyChunk-filled)
			if r.viaMem {
				if len(pieces) > 0 {
					break // read alone below
				}
				pieces = append(pieces, run{r.addr, n, true})
				filled = n
				advance(&runs, n)
				break
			}
			iov = append(iov, unix.RemoteIovec{Base: uintptr(r.addr), Len: int(n)})
			pieces = append(pieces, run{r.addr, n, false})
			filled += n
			advance(&runs, n)
		}
		data := buf[:filled]
		if pieces[0].viaMem {
			if _, err := mem.ReadAt(data, int64(pieces[0].addr)); err != nil {
				return st, fmt.Errorf("read memory of pid %d at %#x: %w", pid, pieces[0].addr, err)
			}
		} else {
			local := []unix.Iovec{{Base: &data[0]}}
			local[0].SetLen(len(data))
			got, err := unix.ProcessVMReadv(pid, local, iov, 0)
			if err != nil {
				return st, fmt.Errorf("read memory of pid %d at %#x: %w", pid, pieces[0].addr, err)
			}
			if uint64(got) != filled {
				return st, fmt.Errorf("read memory of pid %d at %#x: %d of %d bytes", pid, pieces[0].addr, got, filled)
			}
		}
		off := uint64(0)
		for _, p := range pieces {
			if err := w.WritePages(p.addr, data[off:off+p.n]); err != nil {
				return st, err
			}
			off += p.n
		}
		st.pages += filled / pageSize
		done += filled
		if progress != nil {
			progress(done)
		}
	}
	return st, nil
}

// advance consumes n bytes from the first run.
func advance(runs *[]run, n uint64) {
	r := &(*runs)[0]
	r.addr += n
	r.n -= n
	if r.n == 0 {
		*runs = (*runs)[1:]
	}
}
