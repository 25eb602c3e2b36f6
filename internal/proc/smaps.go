package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// SmapsEntry is one VMA of /proc/PID/smaps.
type SmapsEntry struct {
	Mapping
	// Resident, anonymous and swapped-out memory, in bytes.
	Rss, Anonymous, Swap uint64
	// ProtectionKey is the mapping's memory protection key; the line is
	// there only where the kernel enabled protection keys.
	ProtectionKey uint32
	Flags         VmFlags
	// OtherFlags are the VmFlags codes VmFlags has no constant for, in the
	// kernel's order.
	OtherFlags []string
}

// VmFlags is the set of two-letter codes of an smaps VmFlags line. The bits
// are this package's, not the kernel's VM_* values.
type VmFlags uint64

// The codes of fs/proc/task_mmu.c (show_smap_vma_flags), in its order.
const (
	VmRead        VmFlags = 1 << iota // rd
	VmWrite                           // wr
	VmExec                            // ex
	VmShared                          // sh
	VmMayRead                         // mr
	VmMayWrite                        // mw
	VmMayExec                         // me
	VmMayShare                        // ms
	VmGrowsDown                       // gd
	VmPfnMap                          // pf
	VmLocked                          // lo
	VmIO                              // io
	VmSeqRead                         // sr: MADV_SEQUENTIAL
	VmRandRead                        // rr: MADV_RANDOM
	VmDontCopy                        // dc: MADV_DONTFORK
	VmDontExpand                      // de
	VmLockOnFault                     // lf
	VmAccount                         // ac
	VmNoReserve                       // nr
	VmHugeTLB                         // ht
	VmSync                            // sf
	VmArch1                           // ar
	VmWipeOnFork                      // wf
	VmDontDump                        // dd
	VmArm64BTI                        // bt
	VmSoftDirty                       // sd
	VmMixedMap                        // mm
	VmHugePage                        // hg: MADV_HUGEPAGE
	VmNoHugePage                      // nh: MADV_NOHUGEPAGE
	VmMergeable                       // mg: KSM
	VmUffdMissing                     // um
	VmUffdWP                          // uw
	VmMTE                             // mt
	VmUffdMinor                       // ui
	VmShadowStack                     // ss
	VmDroppable                       // dp
	VmSealed                          // sl: mseal
	VmDenyWrite                       // dw: before Linux 5.15
)

var vmFlagCodes = [...]string{
	"rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io",
	"sr", "rr", "dc", "de", "lf", "ac", "nr", "ht", "sf", "ar", "wf", "dd",
	"bt", "sd", "mm", "hg", "nh", "mg", "um", "uw", "mt", "ui", "ss", "dp",
	"sl", "dw",
}

// String gives the codes, space-separated, in the kernel's order.
func (f VmFlags) String() string {
	var codes []string
	for ; f != 0; f &= f - 1 {
		i := bits.TrailingZeros64(uint64(f))
		if i < len(vmFlagCodes) {
			codes = append(codes, vmFlagCodes[i])
		} else {
			codes = append(codes, fmt.Sprintf("bit%d", i))
		}
	}
	return strings.Join(codes, " ")
}

// ParseSmaps parses the contents of /proc/PID/smaps: per VMA a maps line,
// then "Key: value" lines up to the next maps line. Rss, Anonymous, Swap and
// VmFlags are required, ProtectionKey is read where present; other keys
// are skipped.
func ParseSmaps(b []byte) ([]SmapsEntry, error) {
	return parseSmaps(nil, b)
}

// parseSmaps appends the entries of b to entries.
func parseSmaps(entries []SmapsEntry, b []byte) ([]SmapsEntry, error) {
	for len(b) > 0 {
		header, body := b, []byte(nil)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			header, body = b[:i], b[i+1:]
		}
		m, err := parseMapsLine(header)
		if err != nil {
			return nil, fmt.Errorf("parse smaps entry %d %q: %w", len(entries)+1, header, err)
		}
		n := smapsBodyLen(body)
		body, b = body[:n], body[n:]
		e := SmapsEntry{Mapping: m}
		if err := parseFields(body, e.fields(), nil); err != nil {
			return nil, fmt.Errorf("parse smaps entry %d %#x-%#x: %w", len(entries)+1, m.Start, m.End, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// smapsBodyLen is the length of the "Key: value" lines at the start of b. A
// key has no blanks, so its colon comes before any space; a maps line has a
// space before its first colon (in the device field).
func smapsBodyLen(b []byte) int {
	n := 0
	for line := range bytes.Lines(b) {
		if !isFieldLine(line) {
			break
		}
		n += len(line)
	}
	return n
}

// isFieldLine reports whether line is a "Key: value" line: a colon comes
// first of colons, blanks and the line's end, and not at its start. Every
// line of a large smaps goes through it, twice.
func isFieldLine(line []byte) bool {
	for i, c := range line {
		switch c {
		case ':':
			return i > 0
		case ' ', '\t', '\n':
			return false
		}
	}
	return false
}

func (e *SmapsEntry) fields() []field {
	return []field{
		{key: "Rss", parse: kB(&e.Rss)},
		{key: "Anonymous", parse: kB(&e.Anonymous)},
		{key: "Swap", parse: kB(&e.Swap)},
		{key: "ProtectionKey", optional: true, parse: num(&e.ProtectionKey, 10)},
		{key: "VmFlags", parse: func(v string) error {
			e.Flags, e.OtherFlags = parseVmFlags(v)
			return nil
		}},
	}
}

// parseVmFlags never fails: new kernels add codes, and a bit the kernel has
// no name for prints as "??".
func parseVmFlags(v string) (VmFlags, []string) {
	var flags VmFlags
	var other []string
	for _, code := range strings.Fields(v) {
		if i := slices.Index(vmFlagCodes[:], code); i >= 0 {
			flags |= 1 << i
		} else {
			other = append(other, code)
		}
	}
	return flags, other
}

// kB is the parser of a "N kB" value, stored in bytes.
func kB(p *uint64) func(string) error {
	return func(v string) error {
		n, ok := strings.CutSuffix(strings.Trim(v, " \t"), " kB")
		if !ok {
			return fmt.Errorf("%w: no kB unit", ErrSyntax)
		}
		x, err := parseNum[uint64](n, 10)
		if err != nil {
			return err
		}
		if x > math.MaxUint64>>10 {
			return fmt.Errorf("%w: %s kB overflows", ErrSyntax, n)
		}
		*p = x << 10
		return nil
	}
}

// ReadSmaps reads and parses /proc/PID/smaps; pid 0 means the calling
// process.
func ReadSmaps(pid int) ([]SmapsEntry, error) {
	f, err := Open(Path(pid, "smaps"), unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	defer f.Close()
	return readSmaps(bufio.NewReader(f))
}

// readSmaps parses smaps an entry at a time as it reads r: the text of a
// process with 60,000 mappings runs to 34 MB, its entries to far less.
// The entries gather in chunks, copied once into a slice of their number
// at the end: a slice grown by append would allocate five times its final
// size, fresh memory that is slow the first time it is touched (a page
// fault a page). The chunks double from a small one up to maxChunk, so
// that a process of a few mappings costs a few pages, not the 34 of a
// chunk of maxChunk entries, while the dump waits with it frozen.
func readSmaps(r *bufio.Reader) ([]SmapsEntry, error) {
	const minChunk, maxChunk = 32, 1024
	var chunks [][]SmapsEntry
	entries := make([]SmapsEntry, 0, minChunk)
	var entry []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read smaps: %w", err)
		}
		// A maps line (but the rest of a long one) begins the next entry.
		if eof := errors.Is(err, io.EOF); eof || len(entry) > 0 && entry[len(entry)-1] == '\n' && !isFieldLine(line) {
			if eof {
				entry = append(entry, line...)
			}
			if len(entries) == cap(entries) {
				chunks, entries = append(chunks, entries), make([]SmapsEntry, 0, min(2*cap(entries), maxChunk))
			}
			var perr error
			if entries, perr = parseSmaps(entries, entry); perr != nil {
				return nil, perr
			}
			if eof {
				return slices.Concat(append(chunks, entries)...), nil
			}
			entry = entry[:0]
		}
		entry = append(entry, line...)
	}
}
