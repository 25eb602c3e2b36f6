package vdso

import "encoding/binary"

// Mark is what a proxy restore writes over the runtime vDSO's ELF header so
// that a later dump can find the process's original vDSO: the runtime pair
// then sits somewhere else and the old addresses hold the proxy. Its layout
// is CRIU's (version 3), so either tool can dump what the other restored.
type Mark struct {
	// VDSO and VVar are the original (dumped) addresses, where the proxy
	// and the reserved old vvar range are.
	VDSO, VVar uint64
	// RuntimeVVar is where the runtime [vvar] block starts.
	RuntimeVVar uint64
}

const (
	markMagic   = "CRIUvDSO"
	markVersion = 3
	// MarkSize is the number of bytes the mark occupies.
	MarkSize = 40
)

// Encode returns the mark's bytes: signature, original vDSO address,
// version, original vvar address, runtime vvar address.
func (m Mark) Encode() []byte {
	b := make([]byte, MarkSize)
	copy(b, markMagic)
	binary.LittleEndian.PutUint64(b[8:], m.VDSO)
	binary.LittleEndian.PutUint64(b[16:], markVersion)
	binary.LittleEndian.PutUint64(b[24:], m.VVar)
	binary.LittleEndian.PutUint64(b[32:], m.RuntimeVVar)
	return b
}

// ParseMark reads a mark from the start of a vDSO's bytes.
func ParseMark(b []byte) (Mark, error) {
	if len(b) < MarkSize || string(b[:8]) != markMagic {
		return Mark{}, ErrNoMark
	}
	if v := binary.LittleEndian.Uint64(b[16:]); v != markVersion {
		return Mark{}, formatErr("proxy mark version %d, want %d", v, markVersion)
	}
	return Mark{
		VDSO:        binary.LittleEndian.Uint64(b[8:]),
		VVar:        binary.LittleEndian.Uint64(b[24:]),
		RuntimeVVar: binary.LittleEndian.Uint64(b[32:]),
	}, nil
}
