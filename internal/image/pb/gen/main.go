// Command gen writes package pb: CRIU's image messages, and cryo's own,
// as plain Go structs with their protobuf encoding and decoding, from
// go-criu's message descriptors (CRIU's .proto files, compiled) and the
// list of cryo's own messages below. The structs keep go-criu's Go names
// and getters; a required scalar is a value, an optional one a pointer.
//
// Run it with `go generate ./internal/image/pb`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-file"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/creds"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/pidfd"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-netlink"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/tun"
	_ "github.com/checkpoint-restore/go-criu/v8/crit/images/utsns"
)

// skipFiles are proto files whose messages no image holds: CRIU's field
// options, and protobuf's own descriptors (under google/).
var skipFiles = map[string]bool{"opts.proto": true}

// own describes cryo's own messages, in package cryo; their numbers and
// types are a file format: never change one, only add fields.
func own() *descriptorpb.FileDescriptorProto {
	field := func(name string, n int32, t descriptorpb.FieldDescriptorProto_Type, l descriptorpb.FieldDescriptorProto_Label) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: &name, Number: &n, Type: t.Enum(), Label: l.Enum()}
	}
	const (
		u32 = descriptorpb.FieldDescriptorProto_TYPE_UINT32
		i32 = descriptorpb.FieldDescriptorProto_TYPE_INT32
		u64 = descriptorpb.FieldDescriptorProto_TYPE_UINT64
		i64 = descriptorpb.FieldDescriptorProto_TYPE_INT64
		byt = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		req = descriptorpb.FieldDescriptorProto_LABEL_REQUIRED
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	)
	msg := func(name string, fs ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: &name, Field: fs}
	}
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("cryo.proto"),
		Package: proto.String("cryo"),
		Syntax:  proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{
			// cryo-file-stat.img
			msg("file_stat_entry",
				field("id", 1, u32, req), field("uid", 2, u32, req), field("gid", 3, u32, req),
				field("mtime_sec", 4, i64, req), field("mtime_nsec", 5, u32, req),
				field("dev", 6, u64, req), field("ino", 7, u64, req),
				field("btime_sec", 8, i64, req), field("btime_nsec", 9, u32, req)),
			// cryo-sk-extra.img
			msg("sk_extra_entry",
				field("id", 1, u32, req), field("peek_off", 2, i32, req),
				field("mcast_ifindex", 3, u32, rep), field("mcast_group", 4, byt, rep),
				field("tcp_fastopen", 5, u32, opt), field("tcp_defer_accept", 6, u32, opt),
				field("tcp_user_timeout", 7, u32, opt),
				field("opt_level", 8, u32, rep), field("opt_name", 9, u32, rep), field("opt_value", 10, i32, rep)),
			// cryo-thread-extra.img
			msg("thread_extra_entry",
				field("tid", 1, u32, req), field("cpus", 2, u64, rep), field("ioprio", 3, u32, opt),
				field("mdwe", 4, u32, opt), field("coredump_filter", 5, u32, opt)),
		},
	}
}

// packetReserved gives sk_packet_entry the two fields CRIU's .proto
// reserves (commented out) and go-criu's types lack, as cryo writes them:
// a datagram's sender address, and its sender's credentials in
// sk_ucred_entry, which CRIU's .proto names but does not define.
func packetReserved(fd protoreflect.FileDescriptor) (protoreflect.FileDescriptor, error) {
	fdp := protodesc.ToFileDescriptorProto(fd)
	u32 := descriptorpb.FieldDescriptorProto_TYPE_UINT32.Enum()
	req := descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fdp.MessageType = append(fdp.MessageType, &descriptorpb.DescriptorProto{
		Name: proto.String("sk_ucred_entry"),
		Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("uid"), Number: proto.Int32(1), Type: u32, Label: req},
			{Name: proto.String("gid"), Number: proto.Int32(2), Type: u32, Label: req},
			{Name: proto.String("pid"), Number: proto.Int32(3), Type: u32, Label: req},
		},
	})
	for _, m := range fdp.MessageType {
		if m.GetName() != "sk_packet_entry" {
			continue
		}
		m.Field = append(m.Field,
			&descriptorpb.FieldDescriptorProto{Name: proto.String("addr"), Number: proto.Int32(3),
				Type: descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum(), Label: opt},
			&descriptorpb.FieldDescriptorProto{Name: proto.String("ucred"), Number: proto.Int32(128),
				Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".sk_ucred_entry"), Label: opt})
	}
	// A file of its own name: go-criu's is registered already.
	fdp.Name = proto.String("sk-packet.proto")
	return protodesc.NewFile(fdp, protoregistry.GlobalFiles)
}

func main() {
	out := flag.String("o", ".", "directory to write the generated files to")
	flag.Parse()
	var files []protoreflect.FileDescriptor
	var err error
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !skipFiles[fd.Path()] && !strings.HasPrefix(fd.Path(), "google/") {
			files = append(files, fd)
		}
		return true
	})
	for i, fd := range files {
		if fd.Path() == "sk-packet.proto" {
			if files[i], err = packetReserved(fd); err != nil {
				log.Fatalf("sk-packet.proto: %v", err)
			}
		}
	}
	ownFile, err := protodesc.NewFile(own(), nil)
	if err != nil {
		log.Fatalf("cryo's own messages: %v", err)
	}
	files = append(files, ownFile)
	slices.SortFunc(files, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	var cases, news strings.Builder
	for _, fd := range files {
		for _, m := range messageDescs(fd.Messages()) {
			fmt.Fprintf(&cases, "case %q: return new(%s)\n", m.FullName(), goName(m))
			fmt.Fprintf(&news, "new(%s),\n", goName(m))
		}
	}
	writeGo(*out, "new.gen.go", "", "// New returns a new message of the given ProtoName, or nil for a name\n// no message has.\nfunc New(name string) Message {\nswitch name {\n"+cases.String()+"}\nreturn nil\n}\n")
	writeGo(*out, "messages_gen_test.go", "", "// allMessages holds one of each message, for the tests.\nvar allMessages = []Message{\n"+news.String()+"}\n")
	for _, fd := range files {
		g := genFile(fd)
		writeGo(*out, strings.TrimSuffix(fd.Path(), ".proto")+".gen.go", fd.Path(), g.source())
	}
}

// writeGo writes file name of package pb, generated from proto file from
// (if any), formatted.
func writeGo(dir, name, from, body string) {
	head := "// Code generated by ./gen; DO NOT EDIT.\n\n"
	if from != "" {
		head = fmt.Sprintf("// Code generated by ./gen from %s; DO NOT EDIT.\n\n", from)
	}
	src, err := format.Source([]byte(head + "package pb\n\n" + body))
	if err != nil {
		log.Fatalf("%s: gofmt: %v\n%s", name, err, body)
	}
	if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// messageDescs lists ms and the messages nested in them, each before its own.
func messageDescs(ms protoreflect.MessageDescriptors) []protoreflect.MessageDescriptor {
	var all []protoreflect.MessageDescriptor
	for i := 0; i < ms.Len(); i++ {
		all = append(all, ms.Get(i))
		all = append(all, messageDescs(ms.Get(i).Messages())...)
	}
	return all
}

type gen struct {
	bytes.Buffer
	imports map[string]bool
}

func (g *gen) p(format string, args ...any) { fmt.Fprintf(g, format+"\n", args...) }

func genFile(fd protoreflect.FileDescriptor) *gen {
	g := &gen{imports: map[string]bool{}}
	for i := 0; i < fd.Enums().Len(); i++ {
		g.enum(fd.Enums().Get(i))
	}
	for _, m := range messageDescs(fd.Messages()) {
		g.message(m)
		for i := 0; i < m.Enums().Len(); i++ {
			g.enum(m.Enums().Get(i))
		}
	}
	return g
}

// source returns the generated code, its imports first.
func (g *gen) source() string {
	var b strings.Builder
	if len(g.imports) > 0 {
		ims := slices.Sorted(maps.Keys(g.imports))
		b.WriteString("import (\n")
		for _, im := range ims {
			fmt.Fprintf(&b, "%q\n", im)
		}
		b.WriteString(")\n\n")
	}
	b.WriteString(g.String())
	return b.String()
}

// goName returns the Go type go-criu gave a message or enum, or the
// protoc-gen-go name for cryo's own.
func goName(d protoreflect.Descriptor) string {
	var t reflect.Type
	switch d := d.(type) {
	case protoreflect.MessageDescriptor:
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName()); err == nil {
			t = reflect.TypeOf(mt.Zero().Interface()).Elem()
		}
	case protoreflect.EnumDescriptor:
		if et, err := protoregistry.GlobalTypes.FindEnumByName(d.FullName()); err == nil {
			t = reflect.TypeOf(et.New(0))
		}
	}
	if t != nil {
		return t.Name()
	}
	name := camel(string(d.Name()))
	if p, ok := d.Parent().(protoreflect.MessageDescriptor); ok {
		return goName(p) + "_" + name
	}
	return name
}

// fieldNames maps a go-criu message's proto field names to its Go field
// names, read from the struct tags.
func fieldNames(m protoreflect.MessageDescriptor) map[string]string {
	names := map[string]string{}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.FullName())
	if err != nil {
		return names
	}
	t := reflect.TypeOf(mt.Zero().Interface()).Elem()
	for i := 0; i < t.NumField(); i++ {
		for _, part := range strings.Split(t.Field(i).Tag.Get("protobuf"), ",") {
			if n, ok := strings.CutPrefix(part, "name="); ok {
				names[n] = t.Field(i).Name
			}
		}
	}
	return names
}

func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		switch {
		case r == '_':
			up = true
		case up && r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
			up = false
		default:
			b.WriteRune(r)
			up = false
		}
	}
	return b.String()
}

func (g *gen) enum(e protoreflect.EnumDescriptor) {
	name := goName(e)
	prefix := name + "_"
	if p, ok := e.Parent().(protoreflect.MessageDescriptor); ok {
		prefix = goName(p) + "_"
	}
	g.p("// %s is %s.", name, e.FullName())
	g.p("type %s int32\n", name)
	g.p("const (")
	vs := e.Values()
	for i := 0; i < vs.Len(); i++ {
		v := vs.Get(i)
		g.p("%s%s %s = %d", prefix, v.Name(), name, v.Number())
	}
	g.p(")\n")
	g.p("// Enum returns a pointer to a copy of x, for a message's field.")
	g.p("func (x %s) Enum() *%s { return &x }\n", name, name)
	g.imports["strconv"] = true
	g.p("func (x %s) String() string {", name)
	g.p("switch x {")
	seen := map[protoreflect.EnumNumber]bool{}
	for i := 0; i < vs.Len(); i++ {
		v := vs.Get(i)
		if seen[v.Number()] {
			continue
		}
		seen[v.Number()] = true
		g.p("case %d: return %q", v.Number(), v.Name())
	}
	g.p("}")
	g.p("return strconv.Itoa(int(x))")
	g.p("}\n")
}

type field struct {
	d      protoreflect.FieldDescriptor
	name   string // Go field name
	elem   string // Go type of a value: uint32, *VmaEntry, ...
	repeat bool
	ptr    bool // a pointer to elem in the struct, nil when unset (optional scalars)
	val    bool // elem itself in the struct (required scalars, always set)
}

func (g *gen) fields(m protoreflect.MessageDescriptor) []field {
	names := fieldNames(m)
	var fs []field
	for i := 0; i < m.Fields().Len(); i++ {
		d := m.Fields().Get(i)
		f := field{d: d, name: names[string(d.Name())], repeat: d.IsList()}
		if f.name == "" {
			f.name = camel(string(d.Name()))
		}
		switch d.Kind() {
		case protoreflect.BoolKind:
			f.elem = "bool"
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			f.elem = "int32"
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			f.elem = "uint32"
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			f.elem = "int64"
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			f.elem = "uint64"
		case protoreflect.FloatKind:
			f.elem = "float32"
		case protoreflect.DoubleKind:
			f.elem = "float64"
		case protoreflect.StringKind:
			f.elem = "string"
		case protoreflect.BytesKind:
			f.elem = "[]byte"
		case protoreflect.EnumKind:
			f.elem = goName(d.Enum())
		case protoreflect.MessageKind:
			f.elem = "*" + goName(d.Message())
		default:
			log.Fatalf("%s: kind %v not supported", d.FullName(), d.Kind())
		}
		scalar := !f.repeat && d.Kind() != protoreflect.MessageKind && d.Kind() != protoreflect.BytesKind
		f.val = scalar && d.Cardinality() == protoreflect.Required
		f.ptr = scalar && !f.val
		fs = append(fs, f)
	}
	return fs
}

func (f field) goType() string {
	switch {
	case f.repeat:
		return "[]" + f.elem
	case f.ptr:
		return "*" + f.elem
	}
	return f.elem
}

// required reports whether f is required and may be unset: a pointer.
func (f field) required() bool { return f.d.Cardinality() == protoreflect.Required && !f.val }

// wire is the wire type of one value of f.
func (f field) wire() int {
	switch f.d.Kind() {
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return 1
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return 2
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return 5
	}
	return 0
}

// tag returns the encoded key of f with wire type w, as a Go byte list.
func (f field) tag(w int) string {
	v := uint64(f.d.Number())<<3 | uint64(w)
	var parts []string
	for v >= 0x80 {
		parts = append(parts, fmt.Sprintf("%#x", byte(v)|0x80))
		v >>= 7
	}
	parts = append(parts, fmt.Sprintf("%#x", byte(v)))
	return strings.Join(parts, ", ")
}

func (f field) tagLen() int { return strings.Count(f.tag(0), ",") + 1 }

// toWire is the Go expression turning value v of f into the uint64 the
// wire holds, for varint and fixed kinds.
func (g *gen) toWire(f field, v string) string {
	switch f.d.Kind() {
	case protoreflect.BoolKind:
		return "b2u(" + v + ")"
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.EnumKind, protoreflect.Sfixed64Kind:
		return "uint64(" + v + ")"
	case protoreflect.Sint32Kind:
		return "uint64(uint32(" + v + ")<<1 ^ uint32(" + v + ">>31))"
	case protoreflect.Sint64Kind:
		return "uint64(" + v + "<<1) ^ uint64(" + v + ">>63)"
	case protoreflect.DoubleKind:
		g.imports["math"] = true
		return "math.Float64bits(" + v + ")"
	case protoreflect.FloatKind:
		g.imports["math"] = true
		return "uint64(math.Float32bits(" + v + "))"
	case protoreflect.Sfixed32Kind:
		return "uint64(uint32(" + v + "))"
	}
	return "uint64(" + v + ")"
}

// fromWire is the Go expression turning u, a uint64 off the wire, into a
// value of f.
func (g *gen) fromWire(f field, u string) string {
	switch f.d.Kind() {
	case protoreflect.BoolKind:
		return u + " != 0"
	case protoreflect.Sint32Kind:
		return "int32(uint32(" + u + ")>>1) ^ -int32(" + u + "&1)"
	case protoreflect.Sint64Kind:
		return "int64(" + u + ">>1) ^ -int64(" + u + "&1)"
	case protoreflect.DoubleKind:
		g.imports["math"] = true
		return "math.Float64frombits(" + u + ")"
	case protoreflect.FloatKind:
		g.imports["math"] = true
		return "math.Float32frombits(uint32(" + u + "))"
	}
	return f.elem + "(" + u + ")"
}

// sizeOf is the Go expression for the encoded size of value v of f,
// without its key.
func (g *gen) sizeOf(f field, v string) string {
	switch f.wire() {
	case 1:
		return "8"
	case 5:
		return "4"
	case 2:
		if f.d.Kind() == protoreflect.MessageKind {
			return "sizeBytes(" + v + ".size())"
		}
		return "sizeBytes(len(" + v + "))"
	}
	if f.d.Kind() == protoreflect.BoolKind {
		return "1"
	}
	return "sizeVarint(" + g.toWire(f, v) + ")"
}

// sumSizes is the Go statement "lhs" the sum over f's values of each
// one's size plus per.
func (g *gen) sumSizes(f field, lhs, per string) string {
	if one := g.sizeOf(f, "v"); !strings.Contains(one, "v") {
		return fmt.Sprintf("%s len(m.%s) * (%s + %s)", lhs, f.name, per, one)
	}
	s := fmt.Sprintf("%s 0\n", strings.TrimSuffix(lhs, "+="))
	if strings.HasSuffix(lhs, "+=") {
		s = ""
	}
	return s + fmt.Sprintf("for _, v := range m.%s { %s %s + %s }", f.name, strings.Replace(lhs, ":=", "+=", 1), per, g.sizeOf(f, "v"))
}

// appendValue is the Go statement appending value v of f, without key.
func (g *gen) appendValue(f field, v string) string {
	switch f.wire() {
	case 1:
		return "b = appendFixed64(b, " + g.toWire(f, v) + ")"
	case 5:
		return "b = appendFixed32(b, uint32(" + g.toWire(f, v) + "))"
	case 2:
		if f.d.Kind() == protoreflect.MessageKind {
			return "b = appendVarint(b, uint64(" + v + ".size())); b = " + v + ".appendTo(b)"
		}
		return "b = appendVarint(b, uint64(len(" + v + "))); b = append(b, " + v + "...)"
	}
	return "b = appendVarint(b, " + g.toWire(f, v) + ")"
}

func (g *gen) message(m protoreflect.MessageDescriptor) {
	name := goName(m)
	fs := g.fields(m)
	g.p("// %s is %s.", name, m.FullName())
	g.p("type %s struct {", name)
	for _, f := range fs {
		g.p("%s %s", f.name, f.goType())
	}
	g.p("}\n")
	g.p("// ProtoName returns the message's protobuf name.")
	g.p("func (*%s) ProtoName() string { return %q }\n", name, m.FullName())
	g.p("// Reset clears every field.")
	g.p("func (m *%s) Reset() { *m = %s{} }\n", name, name)
	for _, f := range fs {
		g.getter(name, f)
	}

	g.p("func (m *%s) size() (n int) {", name)
	for _, f := range fs {
		k := f.tagLen()
		switch {
		case f.repeat && f.d.IsPacked():
			g.p("if len(m.%s) > 0 {", f.name)
			g.p("%s", g.sumSizes(f, "p :=", "0"))
			g.p("n += %d + sizeBytes(p)", k)
			g.p("}")
		case f.repeat:
			g.p("%s", g.sumSizes(f, "n +=", strconv.Itoa(k)))
		case f.val:
			g.p("n += %d + %s", k, g.sizeOf(f, "m."+f.name))
		case f.ptr:
			g.p("if m.%s != nil { n += %d + %s }", f.name, k, g.sizeOf(f, "*m."+f.name))
		default: // bytes or message, nil when unset
			g.p("if m.%s != nil { n += %d + %s }", f.name, k, g.sizeOf(f, "m."+f.name))
		}
	}
	g.p("return n")
	g.p("}\n")

	g.p("func (m *%s) appendTo(b []byte) []byte {", name)
	for _, f := range fs {
		switch {
		case f.repeat && f.d.IsPacked():
			g.p("if len(m.%s) > 0 {", f.name)
			g.p("%s", g.sumSizes(f, "p :=", "0"))
			g.p("b = append(b, %s)", f.tag(2))
			g.p("b = appendVarint(b, uint64(p))")
			g.p("for _, v := range m.%s { %s }", f.name, g.appendValue(f, "v"))
			g.p("}")
		case f.repeat:
			g.p("for _, v := range m.%s {", f.name)
			g.p("b = append(b, %s)", f.tag(f.wire()))
			g.p("%s", g.appendValue(f, "v"))
			g.p("}")
		case f.val:
			g.p("b = append(b, %s)", f.tag(f.wire()))
			g.p("%s", g.appendValue(f, "m."+f.name))
		case f.ptr:
			g.p("if m.%s != nil {", f.name)
			g.p("b = append(b, %s)", f.tag(f.wire()))
			g.p("%s", g.appendValue(f, "*m."+f.name))
			g.p("}")
		default:
			g.p("if m.%s != nil {", f.name)
			g.p("b = append(b, %s)", f.tag(f.wire()))
			g.p("%s", g.appendValue(f, "m."+f.name))
			g.p("}")
		}
	}
	g.p("return b")
	g.p("}\n")

	g.p("func (m *%s) checkRequired() error {", name)
	for _, f := range fs {
		if f.required() {
			g.p("if m.%s == nil { return missing(%q, %q) }", f.name, m.FullName(), f.d.Name())
		}
		if f.d.Kind() != protoreflect.MessageKind || !hasRequired(f.d.Message(), nil) {
			continue
		}
		if f.repeat {
			g.p("for _, v := range m.%s { if err := v.checkRequired(); err != nil { return err } }", f.name)
		} else {
			g.p("if m.%s != nil { if err := m.%s.checkRequired(); err != nil { return err } }", f.name, f.name)
		}
	}
	g.p("return nil")
	g.p("}\n")

	g.p("func (m *%s) complete() {", name)
	for _, f := range fs {
		req := f.d.Cardinality() == protoreflect.Required
		switch {
		case f.d.Kind() == protoreflect.MessageKind && f.repeat:
			g.p("for _, v := range m.%s { v.complete() }", f.name)
		case f.d.Kind() == protoreflect.MessageKind:
			if req {
				g.p("if m.%s == nil { m.%s = new(%s) }", f.name, f.name, strings.TrimPrefix(f.elem, "*"))
			}
			g.p("if m.%s != nil { m.%s.complete() }", f.name, f.name)
		case f.val || f.ptr:
		case req:
			g.p("if m.%s == nil { m.%s = []byte{} }", f.name, f.name)
		}
	}
	g.p("}\n")

	var vals []field
	for _, f := range fs {
		if f.val {
			vals = append(vals, f)
		}
	}
	if len(vals) > 64 {
		log.Fatalf("%s: more than 64 required scalars", m.FullName())
	}
	g.p("func (m *%s) unmarshal(b []byte) error {", name)
	if len(vals) > 0 {
		g.p("var seen uint64")
	}
	g.p("for len(b) > 0 {")
	g.p("num, typ, n := consumeTag(b)")
	g.p("if n < 0 { return corrupt(%q, 0) }", m.FullName())
	g.p("b = b[n:]")
	if len(fs) > 0 {
		g.p("switch {")
		bit := 0
		for _, f := range fs {
			seen := ""
			if f.val {
				seen = fmt.Sprintf("\nseen |= %#x", uint64(1)<<bit)
				bit++
			}
			g.unmarshalField(m, f, seen)
		}
		g.p("}")
	}
	g.p("n = skipValue(b, typ)")
	g.p("if n < 0 { return corrupt(%q, num) }", m.FullName())
	g.p("b = b[n:]")
	g.p("}")
	for i, f := range vals {
		g.p("if seen&%#x == 0 { return missing(%q, %q) }", uint64(1)<<i, m.FullName(), f.d.Name())
	}
	g.p("return nil")
	g.p("}\n")
}

// hasRequired reports whether messages of m can miss a required field.
func hasRequired(m protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen == nil {
		seen = map[protoreflect.FullName]bool{}
	}
	if seen[m.FullName()] {
		return false
	}
	seen[m.FullName()] = true
	for i := 0; i < m.Fields().Len(); i++ {
		f := m.Fields().Get(i)
		if f.Cardinality() == protoreflect.Required {
			return true
		}
		if f.Kind() == protoreflect.MessageKind && hasRequired(f.Message(), seen) {
			return true
		}
	}
	return false
}

func (g *gen) getter(msg string, f field) {
	typ := f.goType()
	if f.ptr {
		typ = f.elem
	}
	g.p("func (m *%s) Get%s() %s {", msg, f.name, typ)
	switch {
	case f.val:
		g.p("if m != nil { return m.%s }", f.name)
		g.p("return %s", g.zero(f))
	case f.ptr:
		g.p("if m != nil && m.%s != nil { return *m.%s }", f.name, f.name)
		g.p("return %s", g.zero(f))
	default:
		g.p("if m != nil { return m.%s }", f.name)
		g.p("return nil")
	}
	g.p("}\n")
}

// zero is the value the getter of an unset scalar f returns.
func (g *gen) zero(f field) string {
	d := f.d
	if !d.HasDefault() {
		switch d.Kind() {
		case protoreflect.BoolKind:
			return "false"
		case protoreflect.StringKind:
			return `""`
		}
		return "0"
	}
	v := d.Default()
	switch d.Kind() {
	case protoreflect.BoolKind:
		return fmt.Sprint(v.Bool())
	case protoreflect.StringKind:
		return fmt.Sprintf("%q", v.String())
	case protoreflect.EnumKind:
		return fmt.Sprintf("%s(%d)", f.elem, v.Enum())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return fmt.Sprint(v.Float())
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind, protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
		return fmt.Sprint(v.Int())
	}
	return fmt.Sprint(v.Uint())
}

func (g *gen) unmarshalField(m protoreflect.MessageDescriptor, f field, seen string) {
	num := f.d.Number()
	bad := fmt.Sprintf("return corrupt(%q, %d)", m.FullName(), num)
	w := f.wire()
	read := func(dst string) { // reads one value of wire type w into dst
		switch w {
		case 0:
			g.p("u, n := consumeVarint(b)")
		case 1:
			g.p("u, n := consumeFixed64(b)")
		case 5:
			g.p("u, n := consumeFixed32(b)")
		}
		g.p("if n < 0 { %s }", bad)
		g.p("b = b[n:]")
		g.p("%s", strings.ReplaceAll(dst, "$", g.fromWire(f, "u")))
	}
	switch {
	case w == 2:
		g.p("case num == %d && typ == 2:", num)
		g.p("v, n := consumeBytes(b)")
		g.p("if n < 0 { %s }", bad)
		g.p("b = b[n:]")
		switch {
		case f.d.Kind() == protoreflect.MessageKind && f.repeat:
			g.p("e := new(%s)", strings.TrimPrefix(f.elem, "*"))
			g.p("if err := e.unmarshal(v); err != nil { return err }")
			g.p("m.%s = append(m.%s, e)", f.name, f.name)
		case f.d.Kind() == protoreflect.MessageKind:
			g.p("if m.%s == nil { m.%s = new(%s) }", f.name, f.name, strings.TrimPrefix(f.elem, "*"))
			g.p("if err := m.%s.unmarshal(v); err != nil { return err }", f.name)
		case f.d.Kind() == protoreflect.StringKind && f.repeat:
			g.p("m.%s = append(m.%s, string(v))", f.name, f.name)
		case f.d.Kind() == protoreflect.StringKind && f.val:
			g.p("m.%s = string(v)%s", f.name, seen)
		case f.d.Kind() == protoreflect.StringKind:
			g.p("s := string(v)")
			g.p("m.%s = &s", f.name)
		case f.repeat: // bytes
			g.p("m.%s = append(m.%s, append([]byte{}, v...))", f.name, f.name)
		default:
			g.p("m.%s = append([]byte{}, v...)", f.name)
		}
		g.p("continue")
	case f.repeat:
		g.p("case num == %d && typ == %d:", num, w)
		read(fmt.Sprintf("m.%s = append(m.%s, $)", f.name, f.name))
		g.p("continue")
		g.p("case num == %d && typ == 2:", num)
		g.p("v, n := consumeBytes(b)")
		g.p("if n < 0 { %s }", bad)
		g.p("b = b[n:]")
		g.p("for len(v) > 0 {")
		g.p("b := v")
		read(fmt.Sprintf("m.%s = append(m.%s, $)", f.name, f.name))
		g.p("v = b")
		g.p("}")
		g.p("continue")
	case f.val:
		g.p("case num == %d && typ == %d:", num, w)
		read(fmt.Sprintf("m.%s = $%s", f.name, seen))
		g.p("continue")
	default:
		g.p("case num == %d && typ == %d:", num, w)
		read(fmt.Sprintf("x := $\nm.%s = &x", f.name))
		g.p("continue")
	}
}
