package qemu

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// File is one entry of an initramfs.
type File struct {
	// Name is the path inside the archive; a leading "/" is optional.
	Name string
	// Mode holds the type (regular when no type bit is set, fs.ModeDir,
	// fs.ModeSymlink, or fs.ModeDevice|fs.ModeCharDevice) and the
	// permission bits.
	Mode fs.FileMode
	// Data is the content of a regular file or the target of a symlink.
	Data []byte
	// Major and Minor number a device node.
	Major, Minor uint32
}

// BasicInitramfs returns the entries a minimal guest needs around its
// /init: /dev/console, so the kernel can give init a console as fds 0-2 even
// when the kernel has no built-in initramfs providing it, and empty mount
// points.
func BasicInitramfs(init []byte) []File {
	return []File{
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "proc", Mode: fs.ModeDir | 0o555},
		{Name: "sys", Mode: fs.ModeDir | 0o555},
		{Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Name: "init", Mode: 0o755, Data: init},
	}
}

// WriteInitramfsFile writes files as an uncompressed cpio archive to path.
func WriteInitramfsFile(name string, files []File) error {
	var b bytes.Buffer
	if err := WriteCPIO(&b, files); err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// Unix mode type bits used by cpio.
const (
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	cpioMax = 1<<32 - 1
)

// WriteCPIO writes files as an uncompressed cpio archive in the "newc"
// format, the one the kernel unpacks as an initramfs. Parent directories
// missing from files are added (mode 0755) before their first child, because
// the kernel's unpacker does not create them. Timestamps and owners are zero
// so the archive is reproducible.
func WriteCPIO(w io.Writer, files []File) error {
	cw := cpioWriter{w: w, seen: map[string]bool{}}
	for _, f := range files {
		name := strings.Trim(path.Clean("/"+f.Name), "/")
		if name == "" {
			return fmt.Errorf("cpio: invalid name %q", f.Name)
		}
		if cw.seen[name] {
			return fmt.Errorf("cpio: duplicate entry %q", name)
		}
		// Add missing parents, outermost first.
		var parents []string
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if !cw.seen[parents[i]] {
				if err := cw.entry(parents[i], sIFDIR|0o755, nil, 0, 0); err != nil {
					return err
				}
			}
		}
		mode, err := unixMode(f.Mode)
		if err != nil {
			return fmt.Errorf("cpio: %s: %w", name, err)
		}
		var data []byte
		if mode&0o170000 == sIFREG || mode&0o170000 == sIFLNK {
			data = f.Data
		} else if len(f.Data) > 0 {
			return fmt.Errorf("cpio: %s: data given for a non-regular file", name)
		}
		if err := cw.entry(name, mode, data, f.Major, f.Minor); err != nil {
			return err
		}
	}
	return cw.entry("TRAILER!!!", 0, nil, 0, 0)
}

// unixMode converts a Go file mode to the st_mode cpio stores.
func unixMode(m fs.FileMode) (uint32, error) {
	// fs.FileMode has its own setuid/setgid/sticky bits and leaves 0o7000
	// unused, so Unix-style literals such as 0o1777 are honoured too.
	perm := uint32(m & 0o7777)
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch t := m.Type(); t {
	case 0:
		return sIFREG | perm, nil
	case fs.ModeDir:
		return sIFDIR | perm, nil
	case fs.ModeSymlink:
		return sIFLNK | perm, nil
	case fs.ModeDevice | fs.ModeCharDevice:
		return sIFCHR | perm, nil
	default:
		return 0, fmt.Errorf("unsupported file type %v", t)
	}
}

type cpioWriter struct {
	w    io.Writer
	ino  uint32
	seen map[string]bool
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte, major, minor uint32) error {
	if uint64(len(data)) > cpioMax {
		return fmt.Errorf("cpio: %s: too large (%d bytes)", name, len(data))
	}
	c.seen[name] = true
	nlink, ino := 1, uint32(0)
	if name != "TRAILER!!!" {
		c.ino++
		ino = c.ino
	}
	if mode&0o170000 == sIFDIR {
		nlink = 2
	}
	var b bytes.Buffer
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with NUL), check.
	fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b)
	b.Write(data)
	pad4(&b)
	if _, err := c.w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, err)
	}
	return nil
}

// pad4 aligns the archive: in newc both the header+name and the data are
// padded to a multiple of four bytes. Each entry starts aligned, so the
// buffer length is the offset that matters.
func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// FileFromDisk reads the host file src as the initramfs entry name, keeping
// its permission bits.
func FileFromDisk(name, src string) (File, error) {
	st, err := os.Stat(src)
	if err != nil {
		return File{}, fmt.Errorf("initramfs: %w", err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return File{}, fmt.Errorf("initramfs: %w", err)
	}
	return File{Name: name, Mode: st.Mode().Perm(), Data: data}, nil
}
