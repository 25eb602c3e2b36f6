package image

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Affinity is the set of CPUs a thread may run on (sched_setaffinity),
// which CRIU's images do not keep: cryo keeps it in an image of its own,
// cryo-affinity.img, one record per thread whose set is not the dumping
// cryo's own (taskset's, for one).
type Affinity struct {
	TID uint32
	// CPUs is the mask, 64 CPUs a word, CPU 0 the lowest bit of the
	// first: the kernel's cpumask, as sched_getaffinity gives it.
	CPUs []uint64
}

// MaxCPUWords bounds an Affinity's mask: 1,024 CPUs, as glibc's cpu_set_t.
const MaxCPUWords = 16

// affinityType is the message type of cryo-affinity.img records,
// cryo.affinity_entry.
var affinityType = ownMessage("affinity", "affinity_entry",
	ownField("tid", 1, descriptorpb.FieldDescriptorProto_TYPE_UINT32, descriptorpb.FieldDescriptorProto_LABEL_REQUIRED),
	ownField("cpus", 2, descriptorpb.FieldDescriptorProto_TYPE_UINT64, descriptorpb.FieldDescriptorProto_LABEL_REPEATED))

func (a Affinity) message() proto.Message {
	m := affinityType.New()
	f := m.Descriptor().Fields()
	m.Set(f.ByName("tid"), protoreflect.ValueOfUint32(a.TID))
	cpus := m.Mutable(f.ByName("cpus")).List()
	for _, w := range a.CPUs {
		cpus.Append(protoreflect.ValueOfUint64(w))
	}
	return m.Interface()
}

func affinityOf(m protoreflect.Message) (Affinity, error) {
	f := m.Descriptor().Fields()
	a := Affinity{TID: uint32(m.Get(f.ByName("tid")).Uint())}
	cpus := m.Get(f.ByName("cpus")).List()
	if cpus.Len() > MaxCPUWords {
		return a, fmt.Errorf("%w: tid %d: a CPU mask of %d words, more than %d", ErrRecord, a.TID, cpus.Len(), MaxCPUWords)
	}
	var any uint64
	for i := range cpus.Len() {
		w := cpus.Get(i).Uint()
		a.CPUs = append(a.CPUs, w)
		any |= w
	}
	if any == 0 {
		return a, fmt.Errorf("%w: tid %d: an empty CPU mask", ErrRecord, a.TID)
	}
	return a, nil
}

// WriteAffinities writes cryo-affinity.img.
func (d *Dir) WriteAffinities(as []Affinity) error {
	return writeOwn(d, Affinities, as, Affinity.message)
}

// ReadAffinities reads cryo-affinity.img; a checkpoint without it (one
// CRIU made, or an older cryo) gives an error wrapping fs.ErrNotExist.
func (d *Dir) ReadAffinities() ([]Affinity, error) {
	return readOwn(d, Affinities, affinityType, affinityOf)
}
