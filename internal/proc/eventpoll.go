package proc

import (
	"fmt"
	"strings"
)

// EpollTarget is one "tfd:" line of an epoll's fdinfo: a registration,
// keyed by the descriptor number it was added with.
type EpollTarget struct {
	Fd     int
	Events uint32
	Data   uint64
	// Pos, Ino and Sdev describe the watched file: its offset, inode, and
	// the kernel's dev_t (major<<20 | minor) of its file system.
	Pos  int64
	Ino  uint64
	Sdev uint32
}

// EpollTargets parses the "tfd:" lines of an epoll's fdinfo, in the
// kernel's order. The kernel writes
//
//	tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x
func (f Fdinfo) EpollTargets() ([]EpollTarget, error) {
	var out []EpollTarget
	for _, kv := range f.Extra {
		if kv.Key != "tfd" {
			continue
		}
		e, err := parseTfd(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("tfd line %q: %w", kv.Value, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseTfd(v string) (EpollTarget, error) {
	var e EpollTarget
	words := strings.Fields(v)
	if len(words) == 0 {
		return e, fmt.Errorf("%w: no descriptor", ErrSyntax)
	}
	var err error
	if e.Fd, err = parseNum[int](words[0], 10); err != nil {
		return e, err
	}
	// The rest is "key: value" or "key:value" pairs.
	seen := map[string]bool{}
	for i := 1; i < len(words); i++ {
		k, val, ok := strings.Cut(words[i], ":")
		if !ok {
			return e, fmt.Errorf("%w: %q is not key:value", ErrSyntax, words[i])
		}
		if val == "" {
			if i+1 == len(words) {
				return e, fmt.Errorf("%w: no value for %s", ErrSyntax, k)
			}
			i++
			val = words[i]
		}
		if seen[k] {
			return e, fmt.Errorf("%w: repeated %s", ErrSyntax, k)
		}
		seen[k] = true
		switch k {
		case "events":
			e.Events, err = parseNum[uint32](val, 16)
		case "data":
			e.Data, err = parseNum[uint64](val, 16)
		case "pos":
			e.Pos, err = parseNum[int64](val, 10)
		case "ino":
			e.Ino, err = parseNum[uint64](val, 16)
		case "sdev":
			e.Sdev, err = parseNum[uint32](val, 16)
		}
		if err != nil {
			return e, err
		}
	}
	// events and data make the registration; the rest only describe it.
	for _, k := range []string{"events", "data"} {
		if !seen[k] {
			return e, fmt.Errorf("%w: no %s", ErrSyntax, k)
		}
	}
	return e, nil
}

// Eventfd is what an eventfd's fdinfo says of it.
type Eventfd struct {
	Count uint64
	// Semaphore is the EFD_SEMAPHORE mode; older kernels do not report
	// it (SemaphoreKnown is false) and it reads false.
	Semaphore, SemaphoreKnown bool
}

// Eventfd parses the eventfd lines of an fdinfo: "eventfd-count" (hex)
// and, on newer kernels, "eventfd-semaphore".
func (f Fdinfo) Eventfd() (Eventfd, error) {
	var e Eventfd
	v, ok := f.Lookup("eventfd-count")
	if !ok {
		return e, fmt.Errorf("%w: no eventfd-count line", ErrSyntax)
	}
	var err error
	if e.Count, err = parseNum[uint64](v, 16); err != nil {
		return e, fmt.Errorf("eventfd-count: %w", err)
	}
	if v, ok := f.Lookup("eventfd-semaphore"); ok {
		switch v {
		case "0", "1":
			e.Semaphore, e.SemaphoreKnown = v == "1", true
		default:
			return e, fmt.Errorf("%w: eventfd-semaphore %q", ErrSyntax, v)
		}
	}
	return e, nil
}
