package restore

import (
	"errors"
	"fmt"
	"io"

	"github.com/cryo-cr/cryo/internal/image"
)

// writeShmem fills each shared anonymous mapping, created empty by
// mapVMAs, with the contents of its object.
func (r *restorer) writeShmem(buf []byte) error {
	for _, v := range r.c.mm.Vmas {
		if v.GetStatus()&image.VMAAnonShared == 0 {
			continue
		}
		if err := r.writeObject(v.GetShmid(), v.GetStart(), v.GetEnd(), v.GetPgoff(), buf); err != nil {
			return fmt.Errorf("shared memory %d at %#x: %w", v.GetShmid(), v.GetStart(), err)
		}
	}
	return nil
}

// writeObject writes the stored pages of object shmid that fall in the
// mapping [start, end) of object offset pgoff.
func (r *restorer) writeObject(shmid, start, end, pgoff uint64, buf []byte) error {
	pr, err := r.c.dir.OpenShmemPages(shmid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	for {
		e, err := pr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		size := e.NrPages * pageSize
		if e.Vaddr < pgoff || e.Vaddr+size > pgoff+(end-start) {
			return imageErr("pages at object offset %#x-%#x outside the mapping", e.Vaddr, e.Vaddr+size)
		}
		data := pr.Data(e)
		for off := uint64(0); off < size; {
			n := min(uint64(len(buf)), size-off)
			if _, err := data.ReadAt(buf[:n], int64(off)); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read object pages: %w", err)
			}
			if err := r.tr.WriteMemVM(start+e.Vaddr-pgoff+off, buf[:n]); err != nil {
				return err
			}
			off += n
		}
	}
}
