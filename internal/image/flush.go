package image

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// flushEvery is how many bytes a pages file grows by before the disk is
// asked to make them durable. Smaller leaves less for the final Sync, at
// the cost of more flushes of the disk's cache.
const flushEvery = 2 << 20

// flushingFile writes a file and makes what it wrote durable in the
// background, every flushEvery bytes, so that the disk flushes a pages
// file while the dump reads memory, not after: a pages file is most of
// what Sync waits for, and a virtual disk flushes about as fast as memory
// is read. The fdatasyncs go through a descriptor of their own, in a
// goroutine started when the file reaches flushEvery bytes (smaller files
// wait for Sync, like other images); Dir.Sync waits for them to end and
// fails on any error they met: an fdatasync that reports a write error
// consumes it, and the fsync Sync does later through a new descriptor
// would not see it. (Writing with O_DIRECT instead was slower on this
// project's VM, 16 MiB or 1 GiB: the cost is the disk's flush of its
// cache, which O_DIRECT writes need too, not the page cache.)
type flushingFile struct {
	f       *os.File
	d       *Dir
	kick    chan struct{} // nil until the background flush starts
	pending int64         // bytes written since the last request
}

func (w *flushingFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.pending += int64(n)
	if err == nil && w.pending >= flushEvery {
		w.pending = 0
		err = w.request()
	}
	return n, err
}

// request asks for an fdatasync of what was written so far; it does not
// wait for it.
func (w *flushingFile) request() error {
	if w.kick == nil {
		if err := w.start(); err != nil {
			return err
		}
	}
	select {
	case w.kick <- struct{}{}:
	default: // one is queued already, and will cover these bytes too
	}
	return nil
}

func (w *flushingFile) start() error {
	name := filepath.Base(w.f.Name())
	rc, err := w.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("flush %s: %w", name, err)
	}
	var dup int
	cerr := rc.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err = cmp.Or(cerr, err); err != nil {
		return fmt.Errorf("flush %s: duplicate descriptor: %w", name, err)
	}
	kick := make(chan struct{}, 1)
	w.kick = kick
	d := w.d
	d.flushing.Add(1)
	go func() {
		defer d.flushing.Done()
		var err error
		for range kick {
			if err == nil {
				if err = unix.Fdatasync(dup); err != nil {
					err = fmt.Errorf("flush %s: %w", name, err)
				}
			}
		}
		unix.Close(dup)
		if err != nil {
			d.mu.Lock()
			d.err = cmp.Or(d.err, err)
			d.mu.Unlock()
		}
	}()
	return nil
}

// finish flushes in the background what was written since the last
// request, if a background flush runs, and ends it after that. Call it
// once, when the file is complete, before closing it.
func (w *flushingFile) finish() {
	if w.kick == nil {
		return
	}
	if w.pending > 0 {
		w.request()
	}
	close(w.kick)
}
