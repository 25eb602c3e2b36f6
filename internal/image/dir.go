package image

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// Dir is a directory of images. Its methods are safe for concurrent use;
// the Writers and Readers they return are not.
type Dir struct {
	path    string
	created bool // Create made the directory: its parent needs a sync too
	// checkOwner refuses images that others than root or cryo's user
	// could have written (Open's, which a restore reads).
	checkOwner bool
	// oldMode is the mode an existing directory had before Create made it
	// writable by its owner only; 0 if unchanged.
	oldMode uint32

	mu      sync.Mutex
	open    int      // files created and not yet closed
	err     error    // first error closing or flushing one of them
	written []string // files created, for Sync
	// flushing counts the background flushes of pages files still
	// running (see flushingFile).
	flushing sync.WaitGroup
}

// Create prepares path for a new dump. It makes the directory if missing,
// with mode 0700 since images hold process memory, and refuses one that
// already holds images: stale ones would mix with the new dump. An
// existing directory must be one a restore will trust (see checkTrusted):
// one of another user is refused, and one that others may write is made
// writable by its owner only, before any image is in it (Discard puts
// its mode back).
func Create(path string) (*Dir, error) {
	err := os.Mkdir(path, 0o700)
	if err == nil {
		return &Dir{path: path, created: true}, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create image directory: %w", err)
	}
	d := &Dir{path: path}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("create image directory: %w", &os.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("create image directory %s: not a directory", path)
	}
	if st.Mode&0o022 != 0 {
		d.oldMode = st.Mode & 0o7777
		if err := unix.Chmod(path, d.oldMode&^0o022); err != nil {
			return nil, fmt.Errorf("create image directory: make %s writable by its owner only: %w", path, err)
		}
		st.Mode &^= 0o022
	}
	if err := checkTrusted(path, &st); err != nil {
		d.Discard()
		return nil, fmt.Errorf("create image directory: %w", err)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("create image directory: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".img") {
			d.Discard()
			return nil, fmt.Errorf("create image directory %s: %w (%s)", path, ErrNotEmpty, e.Name())
		}
	}
	return d, nil
}

// Open opens an existing image directory to restore from. It, and every
// image read from it, must be trusted (see checkTrusted).
func Open(path string) (*Dir, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("open image directory: %w", &os.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("open image directory %s: not a directory", path)
	}
	if err := checkTrusted(path, &st); err != nil {
		return nil, fmt.Errorf("open image directory: %w", err)
	}
	return &Dir{path: path, checkOwner: true}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// createFile makes a new image file (mode 0600, never overwriting: two
// writers of one image are a bug) and counts it open until done is called.
func (d *Dir) createFile(k Kind, id uint32) (f *os.File, done func(error), err error) {
	name := k.FileName(id)
	f, err = os.OpenFile(filepath.Join(d.path, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create image: %w", err)
	}
	d.mu.Lock()
	d.open++
	d.written = append(d.written, f.Name())
	d.mu.Unlock()
	var once sync.Once
	return f, func(err error) {
		once.Do(func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.open--
			if d.err == nil {
				d.err = err
			}
		})
	}, nil
}

// Create starts the image of kind k for object id (see Kind.FileName).
func (d *Dir) Create(k Kind, id uint32) (*Writer, error) {
	if k.raw() {
		return nil, fmt.Errorf("create %s: %s images hold raw data, not records", k.FileName(id), k)
	}
	f, done, err := d.createFile(k, id)
	if err != nil {
		return nil, err
	}
	w, err := newWriter(f, f, k, k.FileName(id))
	if err != nil {
		f.Close()
		done(err)
		return nil, err
	}
	w.done = done
	return w, nil
}

// WriteImage writes a whole image of kind k for object id: one record per
// message, in order.
func (d *Dir) WriteImage(k Kind, id uint32, msgs ...pb.Message) error {
	w, err := d.Create(k, id)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err = w.Write(m); err != nil {
			break
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open opens the image of kind k for object id. A missing image gives an
// error that matches fs.ErrNotExist, for the optional ones.
func (d *Dir) Open(k Kind, id uint32) (*Reader, error) {
	name := k.FileName(id)
	f, err := d.openImage(name)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, k, name)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.c, r.at = f, f
	return r, nil
}

// ReadImage reads an image of kind k that holds exactly one record into m.
func (d *Dir) ReadImage(k Kind, id uint32, m pb.Message) error {
	return d.readOne(k, id, func(r *Reader) error { return r.Next(m) })
}

// ReadImageEach reads an image of kind k that holds exactly one record
// into m as ReadImage does, except the elements of its repeated message
// field number field, which it hands to f one at a time, decoded into
// elem, without holding the record whole (pb.UnmarshalEachAt).
func (d *Dir) ReadImageEach(k Kind, id uint32, m pb.Message, field int32, elem pb.Message, f func(i int)) error {
	return d.readOne(k, id, func(r *Reader) error { return r.NextEach(m, field, elem, f) })
}

// readOne reads the one record of an image of kind k with next.
func (d *Dir) readOne(k Kind, id uint32, next func(*Reader) error) error {
	r, err := d.Open(k, id)
	if err != nil {
		return err
	}
	defer r.Close()
	switch err := next(r); {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("read %s: %w: no record", r.name, ErrCount)
	case err != nil:
		return err
	}
	switch more, err := r.more(); {
	case err != nil:
		return err
	case more:
		return fmt.Errorf("read %s: %w: more than one record", r.name, ErrCount)
	}
	return nil
}

// WriteSome writes records ms as WriteAll does, but no image at all for
// none: for the kinds a restore takes the absence of for no records, so
// that a dump makes and syncs no empty file.
func WriteSome[M pb.Message](d *Dir, k Kind, id uint32, ms []M) error {
	if len(ms) == 0 {
		return nil
	}
	return WriteAll(d, k, id, ms)
}

// WriteAll writes records ms as the image of kind k for object id, the
// other way of ReadAll.
func WriteAll[M pb.Message](d *Dir, k Kind, id uint32, ms []M) error {
	msgs := make([]pb.Message, len(ms))
	for i, m := range ms {
		msgs[i] = m
	}
	return d.WriteImage(k, id, msgs...)
}

// ReadAll reads every record of the image of kind k for object id, e.g.
// ReadAll[fdinfo.FdinfoEntry](d, Fdinfo, 1).
func ReadAll[T any, M interface {
	*T
	pb.Message
}](d *Dir, k Kind, id uint32) ([]M, error) {
	var all []M
	n, err := readRecords(d, k, id, func() pb.Message {
		all = append(all, M(new(T)))
		return all[len(all)-1]
	})
	if err != nil || n == 0 {
		return nil, err
	}
	return all[:n], nil
}

// ReadValues reads every record as ReadAll does, into one slice of
// values, without a pointer and an allocation each: for images of many
// small records, such as a table of thousands of descriptors.
func ReadValues[T any, M interface {
	*T
	pb.Message
}](d *Dir, k Kind, id uint32) ([]T, error) {
	var all []T
	n, err := readRecords(d, k, id, func() pb.Message {
		all = append(all, *new(T))
		return M(&all[len(all)-1])
	})
	if err != nil || n == 0 {
		return nil, err
	}
	return all[:n], nil
}

// readRecords reads each record of the image of kind k for object id
// into the message next gives for it, and returns how many it read: next
// gives one more, which the image's end leaves unread.
func readRecords(d *Dir, k Kind, id uint32, next func() pb.Message) (int, error) {
	r, err := d.Open(k, id)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	for n := 0; ; n++ {
		switch err := r.Next(next()); {
		case errors.Is(err, io.EOF):
			return n, nil
		case err != nil:
			return 0, err
		}
	}
}

// syncfsFiles is how many images make Sync flush the whole filesystem at
// once (syncfs) rather than fsync each: a checkpoint of thousands of
// connections writes an image per connection, and each fsync commits the
// filesystem's journal.
const syncfsFiles = 64

// Sync makes the dump durable: every image must have been closed without
// error; then all of them are fsynced at once (closing does not sync, so
// that a dump waits for the disk once, not per file), or their filesystem
// for many, and the directory, and its parent if Create made it, so that
// the file names survive a crash too; the background flushes of pages
// files must have ended without error. A dump may kill its target only
// after Sync returns nil.
func (d *Dir) Sync() error {
	d.mu.Lock()
	open, err, written := d.open, d.err, slices.Clone(d.written)
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sync %s: %w", d.path, err)
	}
	if open > 0 {
		return fmt.Errorf("sync %s: %d images still open", d.path, open)
	}
	// Everything is synced at once, while the background flushes of
	// pages files end: each must be durable when Sync returns, in no
	// particular order.
	var syncs []func() error
	if len(written) >= syncfsFiles {
		syncs = append(syncs, func() error { return syncFS(d.path) })
	} else {
		for _, name := range append(written, d.path) {
			syncs = append(syncs, func() error { return syncFile(name) })
		}
	}
	if d.created {
		syncs = append(syncs, func() error { return syncFile(filepath.Dir(d.path)) })
	}
	errs := make(chan error, len(syncs))
	for _, f := range syncs {
		go func() { errs <- f() }()
	}
	d.flushing.Wait()
	for range syncs {
		err = cmp.Or(err, <-errs)
	}
	d.mu.Lock()
	ferr := d.err
	d.mu.Unlock()
	if ferr != nil {
		return fmt.Errorf("sync %s: %w", d.path, ferr)
	}
	return err
}

// Discard removes what a failed dump wrote: every image created through
// d, and the directory if Create made it. A directory that existed
// before is left as it was, its mode too.
func (d *Dir) Discard() error {
	d.mu.Lock()
	written := slices.Clone(d.written)
	d.mu.Unlock()
	var errs []error
	for _, name := range written {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	switch {
	case d.created:
		errs = append(errs, os.Remove(d.path))
	case d.oldMode != 0:
		errs = append(errs, unix.Chmod(d.path, d.oldMode))
	}
	return errors.Join(errs...)
}

// syncFS flushes the filesystem that holds path, data and names.
func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync the filesystem of %s: %w", path, err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
