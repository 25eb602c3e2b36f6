package proc

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// FileHandle is a file handle as name_to_handle_at(2) makes it, which
// the fdinfo of inotify and fanotify prints for each watched inode.
type FileHandle struct {
	Type  int32
	Bytes []byte
}

// InotifyWatch is one "inotify wd:" line of an inotify's fdinfo.
type InotifyWatch struct {
	Wd int32
	// Ino and Sdev are the watched inode and the kernel's dev_t
	// (major<<20 | minor) of its file system.
	Ino  uint64
	Sdev uint32
	// Mask is the events watched, with IN_ONESHOT and IN_EXCL_UNLINK.
	Mask, IgnoredMask uint32
	// Handle is nil when the file system cannot encode one.
	Handle *FileHandle
}

// InotifyWatches parses the watches of an inotify's fdinfo, in the
// kernel's order (the newest first). The kernel writes, all in hex,
//
//	inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x [fhandle-bytes:%x fhandle-type:%x f_handle:%phN]
func (f Fdinfo) InotifyWatches() ([]InotifyWatch, error) {
	var out []InotifyWatch
	for _, kv := range f.Extra {
		if kv.Key != "inotify wd" {
			continue
		}
		p, err := parsePairs("wd:" + kv.Value)
		if err != nil {
			return nil, fmt.Errorf("inotify line %q: %w", kv.Value, err)
		}
		var w InotifyWatch
		err = p.hex(&w.Wd, "wd", &w.Ino, "ino", &w.Sdev, "sdev", &w.Mask, "mask", &w.IgnoredMask, "ignored_mask")
		if err == nil {
			w.Handle, err = p.handle()
		}
		if err == nil {
			err = p.unknown()
		}
		if err != nil {
			return nil, fmt.Errorf("inotify line %q: %w", kv.Value, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// Fanotify is what a fanotify's fdinfo says of it.
type Fanotify struct {
	// Flags are fanotify_init's flags (FAN_CLOEXEC and FAN_NONBLOCK
	// included), EventFlags the open flags of the event descriptors.
	Flags, EventFlags uint32
	Marks             []FanotifyMark
}

// Kinds of fanotify marks.
const (
	FanotifyInode      = "ino"
	FanotifyMount      = "mnt_id"
	FanotifyFilesystem = "sdev"
)

// FanotifyMark is one mark line of a fanotify's fdinfo.
type FanotifyMark struct {
	// Kind is FanotifyInode, FanotifyMount, FanotifyFilesystem, or the
	// first key of a kind of a newer kernel.
	Kind string
	// Ino, Sdev and Handle are an inode mark's inode, the kernel's dev_t
	// of its file system (also of a filesystem mark) and handle (nil if
	// its file system cannot encode one).
	Ino    uint64
	Sdev   uint32
	Handle *FileHandle
	// MntID is a mount mark's mount ID, as in /proc/PID/mountinfo.
	MntID int
	// Mflags are FAN_MARK_* flags of the mark: FAN_MARK_IGNORED_SURV_MODIFY,
	// FAN_MARK_EVICTABLE, FAN_MARK_IGNORE.
	Mflags, Mask, IgnoredMask uint32
}

// Fanotify parses the fanotify lines of an fdinfo. The kernel writes,
// all in hex,
//
//	fanotify flags:%x event-flags:%x
//	fanotify ino:%lx sdev:%x mflags:%x mask:%x ignored_mask:%x [fhandle-bytes:%x fhandle-type:%x f_handle:%phN]
//	fanotify mnt_id:%x mflags:%x mask:%x ignored_mask:%x
//	fanotify sdev:%x mflags:%x mask:%x ignored_mask:%x
func (f Fdinfo) Fanotify() (Fanotify, error) {
	var fa Fanotify
	found := false
	for _, kv := range f.Extra {
		kind, ok := strings.CutPrefix(kv.Key, "fanotify ")
		if !ok {
			continue
		}
		p, err := parsePairs(kind + ":" + kv.Value)
		if err == nil && kind == "flags" {
			if found {
				err = fmt.Errorf("%w: repeated", ErrSyntax)
			}
			found = true
			if err == nil {
				err = p.hex(&fa.Flags, "flags", &fa.EventFlags, "event-flags")
			}
		} else if err == nil {
			m := FanotifyMark{Kind: kind}
			err = p.hex(&m.Mflags, "mflags", &m.Mask, "mask", &m.IgnoredMask, "ignored_mask")
			switch {
			case err != nil:
			case kind == FanotifyInode:
				if err = p.hex(&m.Ino, "ino", &m.Sdev, "sdev"); err == nil {
					m.Handle, err = p.handle()
				}
			case kind == FanotifyMount:
				err = p.hex(&m.MntID, "mnt_id")
			case kind == FanotifyFilesystem:
				err = p.hex(&m.Sdev, "sdev")
			default:
				p = nil // a mark of a newer kernel: the caller names it
			}
			fa.Marks = append(fa.Marks, m)
		}
		if err == nil {
			err = p.unknown()
		}
		if err != nil {
			return Fanotify{}, fmt.Errorf("fanotify line %q: %w", kv.Key+":"+kv.Value, err)
		}
	}
	if !found {
		return Fanotify{}, fmt.Errorf("%w: no fanotify flags line", ErrSyntax)
	}
	return fa, nil
}

// pairs are the "key:value" words of a line; parsers delete what they
// take.
type pairs map[string]string

func parsePairs(s string) (pairs, error) {
	p := pairs{}
	for _, w := range strings.Fields(s) {
		k, v, ok := strings.Cut(w, ":")
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: %q is not key:value", ErrSyntax, w)
		}
		if _, dup := p[k]; dup {
			return nil, fmt.Errorf("%w: repeated %s", ErrSyntax, k)
		}
		p[k] = v
	}
	return p, nil
}

// hex parses the hexadecimal values of keys into pointers, given as
// pointer, key, pointer, key...
func (p pairs) hex(args ...any) error {
	for i := 0; i+1 < len(args); i += 2 {
		key := args[i+1].(string)
		v, ok := p[key]
		if !ok {
			return fmt.Errorf("%w: no %s", ErrSyntax, key)
		}
		delete(p, key)
		var err error
		switch ptr := args[i].(type) {
		case *int32:
			*ptr, err = parseNum[int32](v, 16)
		case *int:
			*ptr, err = parseNum[int](v, 16)
		case *uint32:
			*ptr, err = parseNum[uint32](v, 16)
		case *uint64:
			*ptr, err = parseNum[uint64](v, 16)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// handle parses the file handle words, all or none.
func (p pairs) handle() (*FileHandle, error) {
	_, ok := p["fhandle-bytes"]
	if !ok {
		for _, k := range []string{"fhandle-type", "f_handle"} {
			if _, ok := p[k]; ok {
				return nil, fmt.Errorf("%w: %s without fhandle-bytes", ErrSyntax, k)
			}
		}
		return nil, nil
	}
	var n uint32
	h := &FileHandle{}
	if err := p.hex(&n, "fhandle-bytes", &h.Type, "fhandle-type"); err != nil {
		return nil, err
	}
	v, ok := p["f_handle"]
	if !ok {
		return nil, fmt.Errorf("%w: no f_handle", ErrSyntax)
	}
	delete(p, "f_handle")
	var err error
	if h.Bytes, err = hex.DecodeString(v); err != nil || uint32(len(h.Bytes)) != n {
		return nil, fmt.Errorf("%w: f_handle %q is not %d bytes in hex", ErrSyntax, v, n)
	}
	return h, nil
}

// unknown fails on words left: a kernel that writes more than these
// parsers know may mean something they do not keep.
func (p pairs) unknown() error {
	for k := range p {
		return fmt.Errorf("%w: unknown %s", ErrSyntax, k)
	}
	return nil
}
