package image

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
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

// fileStatType is the message type of cryo-file-stat.img records,
// cryo.file_stat_entry.
var fileStatType = func() protoreflect.MessageType {
	req := descriptorpb.FieldDescriptorProto_LABEL_REQUIRED
	u32, u64, i64 := descriptorpb.FieldDescriptorProto_TYPE_UINT32, descriptorpb.FieldDescriptorProto_TYPE_UINT64, descriptorpb.FieldDescriptorProto_TYPE_INT64
	return ownMessage("file-stat", "file_stat_entry",
		ownField("id", 1, u32, req), ownField("uid", 2, u32, req), ownField("gid", 3, u32, req),
		ownField("mtime_sec", 4, i64, req), ownField("mtime_nsec", 5, u32, req),
		ownField("dev", 6, u64, req), ownField("ino", 7, u64, req),
		ownField("btime_sec", 8, i64, req), ownField("btime_nsec", 9, u32, req))
}()

// ownMessage builds and registers cryo.NAME, the message of one of cryo's
// own images, from its description here: the repository has no protoc,
// and the messages are small.
func ownMessage(file, name string, fields ...*descriptorpb.FieldDescriptorProto) protoreflect.MessageType {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("cryo/" + file + ".proto"), Package: proto.String("cryo"), Syntax: proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String(name), Field: fields}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		panic(fmt.Sprintf("image: cryo.%s: %v", name, err))
	}
	mt := dynamicpb.NewMessageType(fd.Messages().Get(0))
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		panic(err)
	}
	if err := protoregistry.GlobalTypes.RegisterMessage(mt); err != nil {
		panic(err)
	}
	return mt
}

func ownField(name string, n int32, t descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label) *descriptorpb.FieldDescriptorProto {
	return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: t.Enum(), Label: label.Enum()}
}

func (s FileStat) message() proto.Message {
	m := fileStatType.New()
	f := m.Descriptor().Fields()
	set := func(name string, v protoreflect.Value) { m.Set(f.ByName(protoreflect.Name(name)), v) }
	set("id", protoreflect.ValueOfUint32(s.ID))
	set("uid", protoreflect.ValueOfUint32(s.UID))
	set("gid", protoreflect.ValueOfUint32(s.GID))
	set("mtime_sec", protoreflect.ValueOfInt64(s.MtimeSec))
	set("mtime_nsec", protoreflect.ValueOfUint32(s.MtimeNsec))
	set("dev", protoreflect.ValueOfUint64(s.Dev))
	set("ino", protoreflect.ValueOfUint64(s.Inode))
	set("btime_sec", protoreflect.ValueOfInt64(s.BtimeSec))
	set("btime_nsec", protoreflect.ValueOfUint32(s.BtimeNsec))
	return m.Interface()
}

func fileStatOf(m protoreflect.Message) FileStat {
	f := m.Descriptor().Fields()
	get := func(name string) protoreflect.Value { return m.Get(f.ByName(protoreflect.Name(name))) }
	return FileStat{
		ID: uint32(get("id").Uint()), UID: uint32(get("uid").Uint()), GID: uint32(get("gid").Uint()),
		MtimeSec: get("mtime_sec").Int(), MtimeNsec: uint32(get("mtime_nsec").Uint()),
		Dev: get("dev").Uint(), Inode: get("ino").Uint(),
		BtimeSec: get("btime_sec").Int(), BtimeNsec: uint32(get("btime_nsec").Uint()),
	}
}

// WriteFileStats writes cryo-file-stat.img.
func (d *Dir) WriteFileStats(stats []FileStat) error {
	return writeOwn(d, FileStats, stats, FileStat.message)
}

// ReadFileStats reads cryo-file-stat.img; a checkpoint without it (one
// CRIU made, or an older cryo) gives an error wrapping fs.ErrNotExist.
func (d *Dir) ReadFileStats() ([]FileStat, error) {
	return readOwn(d, FileStats, fileStatType, func(m protoreflect.Message) (FileStat, error) { return fileStatOf(m), nil })
}

// writeOwn writes the records of one of cryo's own images, each item
// made a message by msg.
func writeOwn[T any](d *Dir, k Kind, items []T, msg func(T) proto.Message) error {
	msgs := make([]proto.Message, len(items))
	for i, it := range items {
		msgs[i] = msg(it)
	}
	return d.WriteImage(k, 0, msgs...)
}

// readOwn reads the records of one of cryo's own images, of message type
// mt, each made an item by of.
func readOwn[T any](d *Dir, k Kind, mt protoreflect.MessageType, of func(protoreflect.Message) (T, error)) ([]T, error) {
	r, err := d.Open(k, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var all []T
	for {
		m := mt.New()
		switch err := r.Next(m.Interface()); {
		case errors.Is(err, io.EOF):
			return all, nil
		case err != nil:
			return nil, err
		}
		it, err := of(m)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k.FileName(0), err)
		}
		all = append(all, it)
	}
}
