package image

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoimpl"
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
// and the messages are small. The descriptor is encoded here and built
// the way generated code builds its own, lazily: marshaling it with
// descriptorpb, or building it with protodesc, took a millisecond or two
// of every cryo start.
func ownMessage(file, name string, fields ...[]byte) protoreflect.MessageType {
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, name)
	for _, f := range fields {
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendBytes(msg, f)
	}
	// FileDescriptorProto: name, package, message_type, syntax.
	raw := protowire.AppendTag(nil, 1, protowire.BytesType)
	raw = protowire.AppendString(raw, "cryo/"+file+".proto")
	raw = protowire.AppendTag(raw, 2, protowire.BytesType)
	raw = protowire.AppendString(raw, "cryo")
	raw = protowire.AppendTag(raw, 4, protowire.BytesType)
	raw = protowire.AppendBytes(raw, msg)
	raw = protowire.AppendTag(raw, 12, protowire.BytesType)
	raw = protowire.AppendString(raw, "proto2")
	fd := protoimpl.DescBuilder{GoPackagePath: "github.com/cryo-cr/cryo/internal/image", RawDescriptor: raw, NumMessages: 1}.Build().File
	mt := dynamicpb.NewMessageType(fd.Messages().Get(0))
	if err := protoregistry.GlobalTypes.RegisterMessage(mt); err != nil {
		panic(fmt.Sprintf("image: cryo.%s: %v", name, err))
	}
	return mt
}

// ownField encodes the FieldDescriptorProto of field n of an ownMessage.
func ownField(name string, n int32, t descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	for _, v := range []struct {
		num protowire.Number
		val int32
	}{{3, n}, {4, int32(label)}, {5, int32(t)}} {
		b = protowire.AppendTag(b, v.num, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.val))
	}
	return b
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
