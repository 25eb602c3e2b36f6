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
	"math/bits"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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
		str = descriptorpb.FieldDescriptorProto_TYPE_STRING
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
				field("opt_level", 8, u32, rep), field("opt_name", 9, u32, rep), field("opt_value", 10, i32, rep),
				field("if_index", 11, u32, rep), field("if_name", 12, str, rep)),
			// cryo-thread-extra.img
			msg("thread_extra_entry",
				field("tid", 1, u32, req), field("cpus", 2, u64, rep), field("ioprio", 3, u32, opt),
				field("mdwe", 4, u32, opt), field("coredump_filter", 5, u32, opt),
				field("mempolicy", 6, u32, opt), field("mempolicy_nodes", 7, u64, rep),
				field("loginuid", 8, u32, opt)),
			// cryo-io-uring.img
			msg("io_uring_entry",
				field("id", 1, u32, req), field("sq_entries", 2, u32, req), field("cq_entries", 3, u32, req),
				field("flags", 4, u32, req),
				field("sq_head", 5, u32, req), field("sq_tail", 6, u32, req),
				field("cq_head", 7, u32, req), field("cq_tail", 8, u32, req),
				field("sq_off", 9, u32, rep), field("cq_off", 10, u32, rep),
				field("rings", 11, byt, req), field("sqes", 12, byt, req)),
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
	var all []protoreflect.MessageDescriptor
	for _, fd := range files {
		for _, m := range messageDescs(fd.Messages()) {
			fmt.Fprintf(&cases, "case %q: return new(%s)\n", m.FullName(), goName(m))
			fmt.Fprintf(&news, "new(%s),\n", goName(m))
			all = append(all, m)
		}
	}
	writeGo(*out, "tables_gen_unsafe.go", "", tables(all))
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
	entry  bool // one of the messages of entryField, which holds it
}

// oneEntry lists the messages whose optional message fields are one of a
// kind: a file_entry holds the entry of its type alone. They share one
// field, entryField, holding whichever is set: a file_entry took 168
// bytes with a pointer per kind, and a restore of 10,000 descriptors
// holds thousands.
var oneEntry = map[protoreflect.FullName]bool{"file_entry": true}

// entryField is the Go field of a oneEntry message holding its entry.
const entryField = "Entry"

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
		f.entry = oneEntry[m.FullName()] && d.Kind() == protoreflect.MessageKind && !f.repeat && d.Cardinality() == protoreflect.Optional
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

func (g *gen) message(m protoreflect.MessageDescriptor) {
	name := goName(m)
	fs := g.fields(m)
	g.p("// %s is %s.", name, m.FullName())
	g.p("type %s struct {", name)
	var entries []string
	for _, f := range fs {
		if f.entry {
			entries = append(entries, "*"+goName(f.d.Message()))
			continue
		}
		g.p("%s %s", f.name, f.goType())
	}
	if entries != nil {
		g.p("// %s holds the message's one entry, of its kind: what one of the getters of %s returns.", entryField, strings.Join(entries, ", "))
		g.p("%s Message", entryField)
	}
	g.p("}\n")
	g.p("// ProtoName returns the message's protobuf name.")
	g.p("func (*%s) ProtoName() string { return %q }\n", name, m.FullName())
	g.p("// Reset clears every field.")
	g.p("func (m *%s) Reset() { *m = %s{} }\n", name, name)
	if entries != nil {
		g.p("func (m *%s) Get%s() Message {", name, entryField)
		g.p("if m != nil { return m.%s }", entryField)
		g.p("return nil")
		g.p("}\n")
	}
	for _, f := range fs {
		g.getter(name, f)
	}
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
		// Decoding sees to required scalars (held as values, cVal).
		if f.Cardinality() == protoreflect.Required && (f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.BytesKind) {
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
	if f.entry {
		g.p("e, _ := m.Get%s().(%s)", entryField, typ)
		g.p("return e")
		g.p("}\n")
		return
	}
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

// kinds maps a field's kind to the codec's.
var kinds = map[protoreflect.Kind]string{
	protoreflect.BoolKind: "kBool", protoreflect.Int32Kind: "kInt32", protoreflect.EnumKind: "kInt32",
	protoreflect.Sint32Kind: "kSint32", protoreflect.Sfixed32Kind: "kSfixed32",
	protoreflect.Uint32Kind: "kUint32", protoreflect.Fixed32Kind: "kFixed32",
	protoreflect.Int64Kind: "kInt64", protoreflect.Sint64Kind: "kSint64", protoreflect.Sfixed64Kind: "kSfixed64",
	protoreflect.Uint64Kind: "kUint64", protoreflect.Fixed64Kind: "kFixed64",
	protoreflect.FloatKind: "kFloat", protoreflect.DoubleKind: "kDouble",
	protoreflect.StringKind: "kString", protoreflect.BytesKind: "kBytes", protoreflect.MessageKind: "kMessage",
}

// tables returns the source of tables_gen_unsafe.go: each message's table for
// the codec (codec_unsafe.go), in infos, and its method giving it.
func tables(all []protoreflect.MessageDescriptor) string {
	index := map[protoreflect.FullName]int{}
	nested := map[protoreflect.FullName]bool{}
	for i, m := range all {
		index[m.FullName()] = i
		for j := 0; j < m.Fields().Len(); j++ {
			if f := m.Fields().Get(j); f.Kind() == protoreflect.MessageKind {
				nested[f.Message().FullName()] = true
			}
		}
	}
	g := &gen{}
	g.p("import \"unsafe\"\n")
	for i, m := range all {
		g.p("func (m *%s) msg() ref { return ref{unsafe.Pointer(m), &infos[%d]} }\n", goName(m), i)
	}
	g.p("var infos = [...]msgInfo{")
	for _, m := range all {
		name := goName(m)
		g.p("{name: %q, check: %v,", m.FullName(), hasRequired(m, nil))
		if nested[m.FullName()] {
			g.p("new: func() Message { return new(%s) },", name)
		}
		var vals uint64
		g.p("fields: []fieldInfo{")
		for _, f := range g.fields(m) {
			card, field := "cOpt", f.name
			switch {
			case f.entry:
				card, field = "cEntry", entryField
			case f.repeat && f.d.IsPacked():
				card = "cPacked"
			case f.repeat:
				card = "cRep"
			case f.val:
				card = "cVal"
			case f.ptr:
				card = "cPtr"
			}
			extra := ""
			if f.val {
				bit := bits.OnesCount64(vals)
				if bit == 64 {
					log.Fatalf("%s: more than 64 required scalars", m.FullName())
				}
				extra += fmt.Sprintf(", bit: %d", bit)
				vals |= 1 << bit
			}
			if f.d.Cardinality() == protoreflect.Required && !f.val {
				extra += ", required: true"
			}
			if f.d.Kind() == protoreflect.MessageKind {
				extra += fmt.Sprintf(", msg: %d", index[f.d.Message().FullName()])
			}
			g.p("{off: unsafe.Offsetof(%s{}.%s), num: %d, kind: %s, card: %s%s, name: %q},",
				name, field, f.d.Number(), kinds[f.d.Kind()], card, extra, f.d.Name())
		}
		g.p("},")
		if vals != 0 {
			g.p("vals: %#x,", vals)
		}
		g.p("},")
	}
	g.p("}")
	return g.String()
}
