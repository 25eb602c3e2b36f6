package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	// Perms is the four-letter field, e.g. "r-xp".
	Perms  string
	Offset uint64
	// Major and Minor are the device of the backing file.
	Major, Minor uint32
	Inode        uint64
	// Path is the file path or a pseudo name such as "[vdso]"; empty for
	// anonymous memory. A deleted file keeps the kernel's " (deleted)"
	// suffix.
	Path string
}

// Size is the length of the mapping in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// ParseMaps parses the contents of /proc/PID/maps.
func ParseMaps(b []byte) ([]Mapping, error) {
	var maps []Mapping
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, fmt.Errorf("parse maps line %d %q: %w", n, line, err)
		}
		maps = append(maps, m)
	}
	return maps, nil
}

func parseMapsLine(line []byte) (Mapping, error) {
	var m Mapping
	// Five space-separated fields, then padding, then the optional path,
	// which may itself contain spaces.
	var fields [5][]byte
	rest := line
	for i := range fields {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			if i < len(fields)-1 {
				return m, fmt.Errorf("%w: %d fields, want at least 5", ErrSyntax, i+1)
			}
			j = len(rest)
		}
		fields[i] = rest[:j]
		rest = rest[min(j+1, len(rest)):]
	}
	m.Path = string(bytes.TrimLeft(rest, " "))

	var err error
	if m.Start, m.End, err = parseRange(fields[0]); err != nil {
		return m, err
	}
	if len(fields[1]) != 4 {
		return m, fmt.Errorf("%w: permissions %q", ErrSyntax, fields[1])
	}
	m.Perms = string(fields[1])
	if m.Offset, err = parseHex(fields[2], 64); err != nil {
		return m, err
	}
	maj, min, ok := bytes.Cut(fields[3], []byte{':'})
	if !ok {
		return m, fmt.Errorf("%w: device %q", ErrSyntax, fields[3])
	}
	ma, err := parseHex(maj, 32)
	if err != nil {
		return m, err
	}
	mi, err := parseHex(min, 32)
	if err != nil {
		return m, err
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	if m.Inode, err = strconv.ParseUint(string(fields[4]), 10, 64); err != nil {
		return m, fmt.Errorf("%w: inode %q", ErrSyntax, fields[4])
	}
	return m, nil
}

func parseRange(b []byte) (start, end uint64, err error) {
	s, e, ok := bytes.Cut(b, []byte{'-'})
	if !ok {
		return 0, 0, fmt.Errorf("%w: address range %q", ErrSyntax, b)
	}
	if start, err = parseHex(s, 64); err != nil {
		return 0, 0, err
	}
	if end, err = parseHex(e, 64); err != nil {
		return 0, 0, err
	}
	if end <= start {
		return 0, 0, fmt.Errorf("%w: empty address range %q", ErrSyntax, b)
	}
	return start, end, nil
}

func parseHex(b []byte, bits int) (uint64, error) {
	v, err := strconv.ParseUint(string(b), 16, bits)
	if err != nil {
		return 0, fmt.Errorf("%w: hex number %q", ErrSyntax, b)
	}
	return v, nil
}

// ReadMaps reads and parses /proc/PID/maps; pid 0 means the calling process.
func ReadMaps(pid int) ([]Mapping, error) {
	b, err := readSmall(Path(pid, "maps"))
	if err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return ParseMaps(b)
}

// FindMapping returns the first mapping of /proc/PID/maps that match
// accepts, reading no further than it, and whether there is one: a
// process may have tens of thousands of mappings.
func FindMapping(pid int, match func(Mapping) bool) (Mapping, bool, error) {
	f, err := Open(Path(pid, "maps"), unix.O_RDONLY)
	if err != nil {
		return Mapping{}, false, fmt.Errorf("read maps: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		m, err := parseMapsLine(sc.Bytes())
		if err != nil {
			return Mapping{}, false, fmt.Errorf("parse maps line %d %q: %w", n, sc.Bytes(), err)
		}
		if match(m) {
			return m, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Mapping{}, false, fmt.Errorf("read maps: %w", err)
	}
	return Mapping{}, false, nil
}

// Path names a file under /proc/PID; pid 0 means the calling process.
func Path(pid int, name string) string {
	if pid == 0 {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}
