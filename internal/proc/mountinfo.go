package proc

import (
	"fmt"
	"os"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo:
//
//	ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
type Mount struct {
	ID, Parent   int
	Major, Minor uint32
	// Root is the directory of the file system mounted at Point, both
	// unescaped.
	Root, Point string
	// FSType is the file system's type; Super its own options (for a
	// cgroup hierarchy, its controllers among them).
	FSType, Super string
}

// ParseMountinfo parses the contents of /proc/PID/mountinfo.
func ParseMountinfo(b []byte) ([]Mount, error) {
	var out []Mount
	err := eachLine(b, func(line []byte) error {
		words := strings.Split(string(line), " ")
		sep := -1
		for i := 6; i < len(words); i++ {
			if words[i] == "-" {
				sep = i
				break
			}
		}
		if len(words) < 6 || sep < 0 || len(words) < sep+4 {
			return fmt.Errorf("%w: not a mountinfo line", ErrSyntax)
		}
		var m Mount
		var err error
		if m.ID, err = parseNum[int](words[0], 10); err != nil {
			return err
		}
		if m.Parent, err = parseNum[int](words[1], 10); err != nil {
			return err
		}
		major, minor, ok := strings.Cut(words[2], ":")
		if !ok {
			return fmt.Errorf("%w: device %q", ErrSyntax, words[2])
		}
		if m.Major, err = parseNum[uint32](major, 10); err != nil {
			return err
		}
		if m.Minor, err = parseNum[uint32](minor, 10); err != nil {
			return err
		}
		if m.Root, err = unescapeOctal(words[3]); err != nil {
			return err
		}
		if m.Point, err = unescapeOctal(words[4]); err != nil {
			return err
		}
		m.FSType, m.Super = words[sep+1], words[sep+3]
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}

// ReadMountinfo reads and parses /proc/PID/mountinfo; pid 0 means the
// calling process.
func ReadMountinfo(pid int) ([]Mount, error) {
	b, err := os.ReadFile(Path(pid, "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return ParseMountinfo(b)
}

// unescapeOctal undoes the kernel's escaping of blanks, newlines and
// backslashes in paths as \ooo.
func unescapeOctal(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%w: escape in %q", ErrSyntax, s)
		}
		v, err := parseNum[uint32](s[i+1:i+4], 8)
		if err != nil || v > 0xff {
			return "", fmt.Errorf("%w: escape in %q", ErrSyntax, s)
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}
