package image

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image/pb"
)

// FileStat is what identifies a file reached by its path beyond CRIU's
// reg entry (which has its mode, size and build-id): its owner, its
// modification time, and its inode: device, number and birth time (which
// tells a reused inode number; zero where the filesystem keeps none). cryo keeps them in an image of its own,
// cryo-file-stat.img, one record per entry of files.img that has them;
// CRIU's tools know neither the image nor its magic.
type FileStat struct {
	// ID is the files.img entry the file is reached by.
	ID         uint32
	UID, GID   uint32
	MtimeSec   int64
	MtimeNsec  uint32
	Dev, Inode uint64
	BtimeSec   int64
	BtimeNsec  uint32
}

// message is s as a cryo.file_stat_entry record.
func (s FileStat) message() *pb.FileStatEntry {
	return &pb.FileStatEntry{
		Id: s.ID, Uid: s.UID, Gid: s.GID,
		MtimeSec: s.MtimeSec, MtimeNsec: s.MtimeNsec,
		Dev: s.Dev, Ino: s.Inode,
		BtimeSec: s.BtimeSec, BtimeNsec: s.BtimeNsec,
	}
}

func fileStatOf(m *pb.FileStatEntry) (FileStat, error) {
	return FileStat{
		ID: m.GetId(), UID: m.GetUid(), GID: m.GetGid(),
		MtimeSec: m.GetMtimeSec(), MtimeNsec: m.GetMtimeNsec(),
		Dev: m.GetDev(), Inode: m.GetIno(),
		BtimeSec: m.GetBtimeSec(), BtimeNsec: m.GetBtimeNsec(),
	}, nil
}

// WriteFileStats writes cryo-file-stat.img.
func (d *Dir) WriteFileStats(stats []FileStat) error {
	return writeOwn(d, FileStats, stats, FileStat.message)
}

// ReadFileStats reads cryo-file-stat.img; a checkpoint without it (one
// CRIU made, or an older cryo) gives an error wrapping fs.ErrNotExist.
func (d *Dir) ReadFileStats() ([]FileStat, error) {
	return readOwn(d, FileStats, fileStatOf)
}

// writeOwn writes the records of one of cryo's own images, each item
// made a message by msg; none, no image (a restore reads its absence as
// none).
func writeOwn[T any, M pb.Message](d *Dir, k Kind, items []T, msg func(T) M) error {
	msgs := make([]M, len(items))
	for i, it := range items {
		msgs[i] = msg(it)
	}
	return WriteSome(d, k, 0, msgs)
}

// readOwn reads the records of one of cryo's own images, each made an
// item by of.
func readOwn[T, R any, M interface {
	*R
	pb.Message
}](d *Dir, k Kind, of func(M) (T, error)) ([]T, error) {
	ms, err := ReadAll[R, M](d, k, 0)
	if err != nil {
		return nil, err
	}
	all := make([]T, 0, len(ms))
	for _, m := range ms {
		it, err := of(m)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k.FileName(0), err)
		}
		all = append(all, it)
	}
	return all, nil
}
