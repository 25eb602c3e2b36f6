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
	// KernelPageSize is the size of the pages backing the mapping, in
	// bytes: more than a page for huge pages (hugetlb); 0 if not shown.
	KernelPageSize uint64
	Flags          VmFlags
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
// VmFlags are required, ProtectionKey and KernelPageSize are read where
// present; other keys are skipped.
func ParseSmaps(b []byte) ([]SmapsEntry, error) {
	var entries []SmapsEntry
	for n := 1; len(b) > 0; n++ {
		entries = append(entries, SmapsEntry{})
		var err error
		if b, err = parseSmapsEntry(&entries[len(entries)-1], b, n); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// parseSmapsEntry parses the first entry of b, the nth of its smaps, into
// e, and returns the rest of b.
func parseSmapsEntry(e *SmapsEntry, b []byte, n int) ([]byte, error) {
	header, body := b, []byte(nil)
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		header, body = b[:i], b[i+1:]
	}
	m, err := parseMapsLine(header)
	if err != nil {
		return nil, fmt.Errorf("parse smaps entry %d %q: %w", n, header, err)
	}
	l := smapsBodyLen(body)
	*e = SmapsEntry{Mapping: m}
	if err := parseSmapsBody(e, body[:l]); err != nil {
		return nil, fmt.Errorf("parse smaps entry %d %#x-%#x: %w", n, m.Start, m.End, err)
	}
	return body[l:], nil
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

// The keys parseSmapsBody reads, as bits of what it saw.
const (
	smapsRss = 1 << iota
	smapsAnonymous
	smapsSwap
	smapsProtectionKey
	smapsVmFlags
	smapsKernelPageSize
	smapsRequired = smapsRss | smapsAnonymous | smapsSwap | smapsVmFlags
)

// parseSmapsBody reads the "Key: value" lines of one entry into e: Rss,
// Anonymous, Swap and VmFlags once each, ProtectionKey and KernelPageSize
// at most once, the others skipped. The smaps of a process with 60,000 mappings has a
// million and a half lines: this allocates nothing but what e keeps.
func parseSmapsBody(e *SmapsEntry, body []byte) error {
	var seen int
	for line := range bytes.Lines(body) {
		k, v, ok := bytes.Cut(bytes.TrimSuffix(line, []byte{'\n'}), []byte{':'})
		if !ok {
			return fmt.Errorf("%w: no colon", ErrSyntax)
		}
		var key int
		var err error
		switch string(k) {
		case "Rss":
			key = smapsRss
			e.Rss, err = parseKB(v)
		case "Anonymous":
			key = smapsAnonymous
			e.Anonymous, err = parseKB(v)
		case "Swap":
			key = smapsSwap
			e.Swap, err = parseKB(v)
		case "ProtectionKey":
			key = smapsProtectionKey
			var n uint64
			if n, err = decimal(bytes.TrimSpace(v)); err == nil && n > math.MaxUint32 {
				err = fmt.Errorf("%w: protection key %d", ErrSyntax, n)
			}
			e.ProtectionKey = uint32(n)
		case "VmFlags":
			key = smapsVmFlags
			e.Flags, e.OtherFlags = parseVmFlags(v)
		case "KernelPageSize":
			key = smapsKernelPageSize
			e.KernelPageSize, err = parseKB(v)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if seen&key != 0 {
			return fmt.Errorf("%w: repeated key %s", ErrSyntax, k)
		}
		seen |= key
	}
	if missing := smapsRequired &^ seen; missing != 0 {
		return fmt.Errorf("%w: no %s line", ErrSyntax, []string{"Rss", "Anonymous", "Swap", "ProtectionKey", "VmFlags"}[bits.TrailingZeros(uint(missing))])
	}
	return nil
}

// parseVmFlags never fails: new kernels add codes, and a bit the kernel has
// no name for prints as "??".
func parseVmFlags(v []byte) (VmFlags, []string) {
	var flags VmFlags
	var other []string
	for len(v) > 0 {
		v = bytes.TrimLeft(v, " \t")
		n := bytes.IndexAny(v, " \t")
		if n < 0 {
			n = len(v)
		}
		code := v[:n]
		v = v[n:]
		if len(code) == 0 {
			continue
		}
		if i := slices.IndexFunc(vmFlagCodes[:], func(c string) bool { return c == string(code) }); i >= 0 {
			flags |= 1 << i
		} else {
			other = append(other, string(code))
		}
	}
	return flags, other
}

// kB is the parseFields parser of an "N kB" value, stored in bytes.
func kB(p *uint64) func(string) error {
	return func(v string) (err error) {
		*p, err = parseKB([]byte(v))
		return err
	}
}

// parseKB parses an "N kB" value, returning bytes.
func parseKB(v []byte) (uint64, error) {
	n, ok := bytes.CutSuffix(bytes.Trim(v, " \t"), []byte(" kB"))
	if !ok {
		return 0, fmt.Errorf("%w: no kB unit", ErrSyntax)
	}
	x, err := decimal(n)
	if err != nil {
		return 0, err
	}
	if x > math.MaxUint64>>10 {
		return 0, fmt.Errorf("%w: %s kB overflows", ErrSyntax, n)
	}
	return x << 10, nil
}

// decimal parses an unsigned decimal number without allocating.
func decimal(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty number", ErrSyntax)
	}
	var x uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: number %q", ErrSyntax, b)
		}
		hi, lo := bits.Mul64(x, 10)
		x = lo + uint64(c-'0')
		if hi != 0 || x < lo {
			return 0, fmt.Errorf("%w: number %s overflows", ErrSyntax, b)
		}
	}
	return x, nil
}

// ReadSmaps reads and parses /proc/PID/smaps; pid 0 means the calling
// process.
func ReadSmaps(pid int) ([]SmapsEntry, error) {
	var entries []SmapsEntry
	err := ScanSmaps(pid, func(e *SmapsEntry) error {
		entries = append(entries, *e)
		return nil
	})
	return entries, err
}

// ScanSmaps calls fn with each entry of /proc/PID/smaps, in order, parsed
// as it is read: the text of a process with 60,000 mappings runs to 34 MB,
// its entries to 9 MB, and a caller that keeps less than the entries
// holds neither. fn gets the same SmapsEntry each time, overwritten by
// the next (what it points to is fresh); an error from fn stops the scan
// and is returned as is.
func ScanSmaps(pid int, fn func(*SmapsEntry) error) error {
	f, err := Open(Path(pid, "smaps"), unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("read smaps: %w", err)
	}
	defer f.Close()
	return scanSmaps(bufio.NewReader(f), fn)
}

// scanSmaps is ScanSmaps of what r reads.
func scanSmaps(r *bufio.Reader, fn func(*SmapsEntry) error) error {
	var e SmapsEntry
	var entry []byte
	for n := 1; ; {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read smaps: %w", err)
		}
		// A maps line (but the rest of a long one) begins the next entry.
		if eof := errors.Is(err, io.EOF); eof || len(entry) > 0 && entry[len(entry)-1] == '\n' && !isFieldLine(line) {
			if eof {
				entry = append(entry, line...)
			}
			for rest := entry; len(rest) > 0; n++ {
				var perr error
				if rest, perr = parseSmapsEntry(&e, rest, n); perr != nil {
					return perr
				}
				if err := fn(&e); err != nil {
					return err
				}
			}
			if eof {
				return nil
			}
			entry = entry[:0]
		}
		entry = append(entry, line...)
	}
}
