package dump

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
)

// memfdObject is one memfd inode: its memfd.img entry and a descriptor of
// cryo's to read its contents through when the pages are copied.
type memfdObject struct {
	e *memfd.MemfdInodeEntry
	f *os.File
}

// memfdName is the name a memfd was created with, from the path its
// mappings and descriptors show, "/memfd:NAME (deleted)".
func memfdName(path string) (string, bool) {
	name, ok := strings.CutPrefix(path, "/memfd:")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(name, " (deleted)"), true
}

// memfdInode returns the memfd.img entry of the memfd that path (a
// /proc/PID/fd or map_files link) reaches, recording it the first time.
// Its contents are stored once, however many mappings and descriptors
// share it.
func (t *fileTable) memfdInode(path, name string) (*memfd.MemfdInodeEntry, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("stat memfd %s: %w", name, err)
	}
	if o, ok := t.memfds[st.Ino]; ok {
		return o.e, nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: memfd %s has mode %#o", ErrUnsupported, name, st.Mode)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open memfd %s: %w", name, err)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get seals of memfd %s: %w", name, err)
	}
	e := &memfd.MemfdInodeEntry{
		Name: proto.String(name), Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid),
		Size: proto.Uint64(uint64(st.Size)), Shmid: proto.Uint32(uint32(st.Ino)),
		Seals: proto.Uint32(uint32(seals)), InodeId: proto.Uint64(uint64(len(t.memfdOrder) + 1)),
		Mode: proto.Uint32(st.Mode),
	}
	t.memfds[st.Ino] = &memfdObject{e: e, f: f}
	t.memfdOrder = append(t.memfdOrder, st.Ino)
	return e, nil
}

// memfdFile returns the id of a MEMFD file entry for the memfd at path,
// with the open flags and position given, and makes the entry if id is 0.
// Mappings refer to such an entry through their shmid, as CRIU's do.
func (t *fileTable) memfdFile(id uint32, path, name string, flags uint32, pos uint64) (uint32, error) {
	e, err := t.memfdInode(path, name)
	if err != nil {
		return 0, err
	}
	if id == 0 {
		key := fmt.Sprintf("memfd:%d:%o", e.GetInodeId(), flags)
		if id, ok := t.byPath[key]; ok {
			return id, nil
		}
		id = t.nextID()
		t.byPath[key] = id
	}
	t.files = append(t.files, &fdinfo.FileEntry{
		Type: fdinfo.FdTypes_MEMFD.Enum(), Id: proto.Uint32(id),
		Memfd: &memfd.MemfdFileEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(pos),
			Fown: zeroFown(), InodeId: proto.Uint32(uint32(e.GetInodeId())),
		},
	})
	return id, nil
}

// closeMemfds closes cryo's descriptors of the memfds.
func (t *fileTable) closeMemfds() {
	for _, o := range t.memfds {
		o.f.Close()
	}
}

// copyMemfds stores the contents of each memfd in the pages of its shmid,
// read through its descriptor: pages that no mapping holds belong to the
// object too. Holes are skipped.
func (d *dumper) copyMemfds(pagesID uint32) error {
	buf := make([]byte, copyChunk)
	for _, ino := range d.files.memfdOrder {
		o := d.files.memfds[ino]
		w, err := d.dir.CreateShmemPages(ino, pagesID)
		if err != nil {
			return err
		}
		pagesID++
		err = copyObject(o, w, buf, &d.stats.Pages)
		if err := errors.Join(err, w.Close()); err != nil {
			return fmt.Errorf("memfd %s: %w", o.e.GetName(), err)
		}
	}
	return nil
}

func copyObject(o *memfdObject, w *image.PageWriter, buf []byte, pages *uint64) error {
	fd := int(o.f.Fd())
	size := int64(o.e.GetSize())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only holes left
		}
		if err != nil {
			return fmt.Errorf("seek data from %#x: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole from %#x: %w", data, err)
		}
		data &^= pageSize - 1
		hole = min((hole+pageSize-1)&^(pageSize-1), (size+pageSize-1)&^(pageSize-1))
		for data < hole {
			n := min(int64(len(buf)), hole-data)
			b := buf[:n]
			got, err := o.f.ReadAt(b, data)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read at %#x: %w", data, err)
			}
			clear(b[got:]) // the tail of the last page, past the size
			if err := w.WritePages(uint64(data), b); err != nil {
				return err
			}
			*pages += uint64(n) / pageSize
			data += n
		}
		off = hole
	}
	return nil
}
