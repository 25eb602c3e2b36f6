package restore

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// writeShmem fills each shared anonymous mapping, created empty by
// mapVMAs, with the contents of its object.
func (r *restorer) writeShmem() error {
	for _, v := range r.c.mm.Vmas {
		if v.GetStatus()&image.VMAAnonShared == 0 {
			continue
		}
		if err := r.writeObject(v.GetShmid(), v.GetStart(), v.GetEnd(), v.GetPgoff()); err != nil {
			return fmt.Errorf("shared memory %d at %#x: %w", v.GetShmid(), v.GetStart(), err)
		}
	}
	return nil
}

// writeObject writes the stored pages of object shmid that fall in the
// mapping [start, end) of object offset pgoff.
func (r *restorer) writeObject(shmid, start, end, pgoff uint64) error {
	pr, err := r.c.dir.OpenShmemPages(shmid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	return eachRun(pr, func(e image.PageEntry) error {
		size := e.NrPages * pageSize
		if e.Vaddr < pgoff || e.Vaddr+size > pgoff+(end-start) {
			return imageErr("pages at object offset %#x-%#x outside the mapping", e.Vaddr, e.Vaddr+size)
		}
		// Object offset e.Vaddr is at address start+e.Vaddr-pgoff.
		return r.writeRange(pr, e, vdso.Range{Start: e.Vaddr, End: e.Vaddr + size}, start-pgoff)
	})
}
