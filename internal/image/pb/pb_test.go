package pb

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

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

// reference returns go-criu's type of m, the protobuf runtime's
// implementation of the same message; cryo's own have none.
func reference(t *testing.T, m Message) protoreflect.MessageType {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(m.ProtoName()))
	if err != nil {
		return nil
	}
	return mt
}

func fresh(m Message) Message { return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message) }

// fill sets m's required fields, and at random its others, to random
// values, down to depth levels of optional messages; of a message that
// holds one entry of its kind (FileEntry), one of them at most.
func fill(m protoreflect.Message, rng *rand.Rand, depth int) {
	fields := m.Descriptor().Fields()
	oneEntry := holdsOneEntry(m.Descriptor())
	entries := 0
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Cardinality() != protoreflect.Required && (depth <= 0 || rng.IntN(2) == 0) {
			continue
		}
		if oneEntry && f.Message() != nil && !f.IsList() {
			if entries++; entries > 1 {
				continue
			}
		}
		switch {
		case f.IsList():
			l := m.Mutable(f).List()
			for range rng.IntN(4) {
				if f.Message() != nil {
					e := l.NewElement()
					fill(e.Message(), rng, depth-1)
					l.Append(e)
				} else {
					l.Append(value(f, rng))
				}
			}
		case f.Message() != nil:
			fill(m.Mutable(f).Message(), rng, depth-1)
		default:
			m.Set(f, value(f, rng))
		}
	}
}

// holdsOneEntry reports whether our type of d holds one entry of its kind
// in its field Entry, rather than a field per kind.
func holdsOneEntry(d protoreflect.MessageDescriptor) bool {
	m := New(string(d.FullName()))
	if m == nil {
		return false
	}
	_, ok := reflect.TypeOf(m).Elem().FieldByName("Entry")
	return ok
}

// value returns a random value of scalar field f, extremes often.
func value(f protoreflect.FieldDescriptor, rng *rand.Rand) protoreflect.Value {
	u := rng.Uint64()
	switch rng.IntN(4) {
	case 0:
		u = 0
	case 1:
		u = ^uint64(0)
	case 2:
		u >>= rng.IntN(64)
	}
	switch f.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(u&1 == 1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(u))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(u))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(u))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(u)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(int32(u)))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(int64(u)) / 3)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(make([]byte, u%5)) + "é")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(bytes.Repeat([]byte{byte(u)}, int(u%300)))
	case protoreflect.EnumKind:
		vs := f.Enum().Values()
		return protoreflect.ValueOfEnum(vs.Get(int(u % uint64(vs.Len()))).Number())
	}
	panic(f.Kind())
}

// TestMatchesProtobuf checks every message against the protobuf runtime's
// implementation of the same descriptor: what it encodes, we decode to the
// same values, and what we encode, it decodes to them.
func TestMatchesProtobuf(t *testing.T) {
	for i, m := range allMessages {
		mt := reference(t, m)
		if mt == nil {
			continue
		}
		t.Run(m.ProtoName(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			for range 30 {
				ref := mt.New()
				fill(ref, rng, 3)
				want, err := proto.Marshal(ref.Interface())
				if err != nil {
					t.Fatal(err)
				}
				got := fresh(m)
				if err := Unmarshal(want, got); err != nil {
					t.Fatalf("decode %x: %v", want, err)
				}
				again, err := Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				if Size(got) != len(again) {
					t.Errorf("Size %d, encoding %d bytes", Size(got), len(again))
				}
				back := mt.New().Interface()
				if err := proto.Unmarshal(again, back); err != nil {
					t.Fatalf("protobuf decoding our %x: %v", again, err)
				}
				if !proto.Equal(ref.Interface(), back) {
					t.Fatalf("round trip changed the message:\n%v\n%v", ref, back)
				}
			}
		})
	}
}

// TestAppendField checks that an mm_entry encoded as its VMAs
// (AppendField) and then its other fields, as a dump writes it, is what
// the protobuf runtime decodes to the same message, and so do we.
func TestAppendField(t *testing.T) {
	mm := &MmEntry{MmStartCode: 0x400000, MmBrk: 0x600000, ExeFileId: 7, MmSavedAuxv: []uint64{6, 4096},
		Dumpable: Int32(1), ThpDisabled: Bool(true)}
	var b []byte
	for i := range 300 {
		v := &VmaEntry{Start: uint64(i) << 12, End: uint64(i+1) << 12, Prot: 3, Flags: 0x22, Status: 0x21, Fd: -1}
		if i%7 == 0 {
			v.Madv = Uint64(1 << 14)
		}
		var err error
		if b, err = AppendField(b, MmVmasField, v); err != nil {
			t.Fatal(err)
		}
		mm.Vmas = append(mm.Vmas, v)
	}
	head := *mm
	head.Vmas = nil
	b, err := AppendMarshal(b, &head)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Marshal(mm)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference(t, mm)
	w, g := ref.New().Interface(), ref.New().Interface()
	if err := proto.Unmarshal(want, w); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, g); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(w, g) {
		t.Errorf("protobuf decodes the VMAs first as\n%v\nnot\n%v", g, w)
	}
	var got MmEntry
	if err := Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, mm) {
		t.Errorf("decoded the VMAs first as %+v, not %+v", &got, mm)
	}
	if _, err := AppendField(nil, MmVmasField, &PipeEntry{Id: 1}); !errors.Is(err, ErrMissingField) {
		t.Errorf("AppendField of an incomplete pipe_entry: %v, want ErrMissingField", err)
	}
}

func TestClone(t *testing.T) {
	v := &VmaEntry{Start: 0x1000, End: 0x2000, Prot: 3, Flags: 0x22, Status: 1, Fd: -1, Madv: Uint64(1)}
	c := Clone(v)
	if c == v || c.Madv == v.Madv || !reflect.DeepEqual(c, v) {
		t.Fatalf("Clone(%+v) = %+v: not a deep copy", v, c)
	}
	if got := Clone((*VmaEntry)(nil)); got == nil || !reflect.DeepEqual(got, &VmaEntry{}) {
		t.Fatalf("Clone(nil) = %+v, want an empty message", got)
	}
}

// TestRequired checks that neither direction lets a message go without a
// required field, nested ones included.
func TestRequired(t *testing.T) {
	if _, err := Marshal(&PipeEntry{Id: 1, PipeId: 2, Flags: 3}); !errors.Is(err, ErrMissingField) {
		t.Errorf("Marshal of a pipe_entry without fown: %v, want ErrMissingField", err)
	}
	b, err := Marshal(&VmaEntry{Start: 1, End: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(b[:4], new(VmaEntry)); !errors.Is(err, ErrMissingField) {
		t.Errorf("Unmarshal of a vma_entry with only start and end: %v, want ErrMissingField", err)
	}
	f := &FileEntry{Type: FdTypes_PIPE, Id: 1, Entry: &PipeEntry{Id: 1, PipeId: 2, Flags: 3}}
	if _, err := Marshal(f); !errors.Is(err, ErrMissingField) {
		t.Errorf("Marshal of a file_entry holding an incomplete pipe_entry: %v, want ErrMissingField", err)
	}
}

func TestCorrupt(t *testing.T) {
	for _, b := range [][]byte{
		{0x08},             // a varint cut short
		{0x0a, 0x05, 0x01}, // bytes longer than what is left
		{0x00},             // field number 0
		{0x0b},             // a group
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, // a varint over 64 bits
	} {
		for _, m := range allMessages {
			if err := Unmarshal(b, fresh(m)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Unmarshal(%x) into %s: %v, want ErrCorrupt", b, m.ProtoName(), err)
			}
		}
	}
	// A file_entry holds the entry of its type alone.
	var b []byte
	for _, f := range []*FileEntry{
		{Type: FdTypes_EVENTFD, Id: 1, Entry: &EventfdFileEntry{Id: 1, Flags: 2, Counter: 3, Fown: &FownEntry{}}},
		{Entry: &PidfdEntry{Id: 1, Flags: 2, Fown: &FownEntry{}}},
	} {
		Complete(f)
		e, err := Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, e...)
	}
	if err := Unmarshal(b, new(FileEntry)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Unmarshal of a file_entry with an eventfd and a pidfd entry: %v, want ErrCorrupt", err)
	}
}

// FuzzUnmarshal decodes the input as every message: it must fail with an
// error or give a message whose own encoding decodes to it again.
func FuzzUnmarshal(f *testing.F) {
	seeds, err := filepath.Glob("testdata/seeds/*")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/seeds: %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range allMessages {
			got := fresh(m)
			if Unmarshal(b, got) != nil {
				continue
			}
			again, err := Marshal(got)
			if err != nil {
				t.Fatalf("%s: re-encoding what decoded: %v", m.ProtoName(), err)
			}
			back := fresh(m)
			if err := Unmarshal(again, back); err != nil || !reflect.DeepEqual(got, back) {
				t.Fatalf("%s: %x decoded to %+v, its encoding %x to %+v (%v)", m.ProtoName(), b, got, again, back, err)
			}
		}
	})
}

// FuzzUnmarshalEachAt checks that unmarshalEachAt decodes what Unmarshal
// does, the elements handed over one at a time, and fails where it fails,
// with windows of any size: the fuzzer's first byte is the window's,
// past maxFieldHead.
func FuzzUnmarshalEachAt(f *testing.F) {
	for _, s := range []string{"testdata/seeds/mm", "testdata/seeds/vma"} {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{0}, b...))
		f.Add(append([]byte{30}, b...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		window, b := maxFieldHead+int(b[0]), b[1:]
		want := &MmEntry{}
		wantErr := Unmarshal(b, want)
		// At an offset, in a reader that holds more after the encoding.
		in := bytes.NewReader(append(append([]byte("ab"), b...), "cd"...))
		got := &MmEntry{}
		var vma VmaEntry
		var vmas []*VmaEntry
		err := unmarshalEachAt(in, 2, int64(len(b)), window, got, MmVmasField, &vma, func(i int) {
			if i != len(vmas) {
				t.Fatalf("element %d handed over as %d", len(vmas), i)
			}
			vmas = append(vmas, Clone(&vma))
		})
		got.Vmas = vmas
		switch {
		case (err == nil) != (wantErr == nil):
			t.Fatalf("window %d, %x: unmarshalEachAt: %v, Unmarshal: %v", window, b, err, wantErr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("window %d, %x: unmarshalEachAt decoded %+v, Unmarshal %+v", window, b, got, want)
		}
	})
}

// TestGenerated checks that the generated files are what ./gen writes now.
func TestGenerated(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to run ./gen: %v", err)
	}
	dir := t.TempDir()
	if out, err := exec.Command(gotool, "run", "./gen", "-o", dir).CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, out)
	}
	want, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := filepath.Glob("*gen*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(have) {
		t.Errorf("./gen writes %d files, the package has %d: run go generate", len(want), len(have))
	}
	for _, w := range want {
		a, _ := os.ReadFile(w)
		b, err := os.ReadFile(filepath.Base(w))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from what ./gen writes (%v): run go generate", filepath.Base(w), err)
		}
	}
}

func TestComplete(t *testing.T) {
	for _, m := range allMessages {
		m := fresh(m)
		Complete(m)
		if _, err := Marshal(m); err != nil {
			t.Errorf("%s after Complete: %v", m.ProtoName(), err)
		}
	}
	if id := (&UnixSkEntry{}).GetMntId(); id != -1 {
		t.Errorf("unix_sk_entry.mnt_id unset reads %d, want its default -1", id)
	}
}
