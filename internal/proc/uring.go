package proc

import (
	"bytes"
	"fmt"
	"strings"
)

// Uring is what the fdinfo of an io_uring instance says of it
// (io_uring/fdinfo.c). The counters are the kernel's free-running u32s:
// SqHead and CqTail as the ring's shared memory holds them, SqTail and
// CqHead as the process last wrote them there, CachedSqHead and
// CachedCqTail the kernel's own copies.
type Uring struct {
	SqMask, SqHead, SqTail, CachedSqHead uint32
	CqMask, CqHead, CqTail, CachedCqTail uint32
	// SQEs are the entries written and not yet submitted (SqTail -
	// SqHead), CQEs the completions not yet reaped (CqTail - CqHead);
	// the kernel lists them, at most a ring's worth.
	SQEs, CQEs uint32
	// SqThread is the pid of the SQPOLL thread, -1 without one;
	// SqThreadCpu the CPU it is bound to, -1 if none.
	SqThread, SqThreadCpu int32
	// UserFiles and UserBufs are the registered files and buffers.
	UserFiles, UserBufs uint32
	// Polls are the entries of PollList (requests armed with poll,
	// in flight); Overflow those of CqOverflowList (completions the CQ
	// ring had no room for).
	Polls, Overflow int
	// NAPI is the NAPI line's value ("disabled" unless busy polling was
	// registered); empty if the kernel prints none.
	NAPI string
	// Other are the keys of lines this parser does not know (sections
	// of newer kernels, Personalities), in order.
	Other []string
}

// uringKeys are the keys of an io_uring's fdinfo, in the order the
// kernel writes them; each appears once. A key's section (the lines
// after it that begin with a blank) lists its entries.
var uringKeys = []string{
	"SqMask", "SqHead", "SqTail", "CachedSqHead", "CqMask", "CqHead", "CqTail", "CachedCqTail",
	"SQEs", "CQEs", "SqThread", "SqThreadCpu", "SqTotalTime", "SqWorkTime", "UserFiles", "UserBufs",
	"PollList", "CqOverflowList",
}

// ParseUring parses the io_uring part of an fdinfo: its lines from
// "SqMask:" on (Fdinfo.Uring). The kernel writes
//
//	SqMask:	0x%x
//	SqHead:	%u ... CachedCqTail:	%u
//	SQEs:	%u
//	%5u: opcode:%s, ...		(one per SQE)
//	CQEs:	%u
//	%5u: user_data:%llu, ...	(one per CQE)
//	SqThread:	%d ... UserFiles:	%u
//	%5u: %s			(one per registered file)
//	UserBufs:	%u
//	%5u: 0x%llx/%u			(one per registered buffer)
//	PollList:
//	  op=%d, task_works=%d		(one per armed poll)
//	CqOverflowList:
//	  user_data=%llu, res=%d, flags=%x
//	NAPI:	...
func ParseUring(b []byte) (Uring, error) {
	var u Uring
	seen := map[string]int{} // key: entries of its section
	var order []string
	section := ""
	err := eachLine(b, func(line []byte) error {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if section == "" {
				return fmt.Errorf("%w: entry before any key", ErrSyntax)
			}
			seen[section]++
			return nil
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(k) == 0 {
			return fmt.Errorf("%w: no key", ErrSyntax)
		}
		key, val := string(k), strings.Trim(string(v), " \t")
		if _, dup := seen[key]; dup {
			return fmt.Errorf("%w: repeated key %s", ErrSyntax, key)
		}
		seen[key], section = 0, key
		order = append(order, key)
		var err error
		switch key {
		case "SqMask":
			u.SqMask, err = parseHex32(val)
		case "CqMask":
			u.CqMask, err = parseHex32(val)
		case "SqHead":
			u.SqHead, err = parseNum[uint32](val, 10)
		case "SqTail":
			u.SqTail, err = parseNum[uint32](val, 10)
		case "CachedSqHead":
			u.CachedSqHead, err = parseNum[uint32](val, 10)
		case "CqHead":
			u.CqHead, err = parseNum[uint32](val, 10)
		case "CqTail":
			u.CqTail, err = parseNum[uint32](val, 10)
		case "CachedCqTail":
			u.CachedCqTail, err = parseNum[uint32](val, 10)
		case "SQEs":
			u.SQEs, err = parseNum[uint32](val, 10)
		case "CQEs":
			u.CQEs, err = parseNum[uint32](val, 10)
		case "SqThread":
			u.SqThread, err = parseNum[int32](val, 10)
		case "SqThreadCpu":
			u.SqThreadCpu, err = parseNum[int32](val, 10)
		case "SqTotalTime", "SqWorkTime":
			_, err = parseNum[uint64](val, 10)
		case "UserFiles":
			u.UserFiles, err = parseNum[uint32](val, 10)
		case "UserBufs":
			u.UserBufs, err = parseNum[uint32](val, 10)
		case "PollList", "CqOverflowList":
			if val != "" {
				err = fmt.Errorf("%w: %s has a value", ErrSyntax, key)
			}
		case "NAPI":
			u.NAPI = val
			if val == "" {
				err = fmt.Errorf("%w: empty NAPI", ErrSyntax)
			}
		default:
			u.Other = append(u.Other, key)
		}
		return err
	})
	if err != nil {
		return Uring{}, fmt.Errorf("parse io_uring fdinfo: %w", err)
	}
	// The known keys, once each and in the kernel's order.
	i := 0
	for _, k := range order {
		if i < len(uringKeys) && k == uringKeys[i] {
			i++
		}
	}
	if i != len(uringKeys) {
		return Uring{}, fmt.Errorf("parse io_uring fdinfo: %w: no %s line, or out of order", ErrSyntax, uringKeys[i])
	}
	if order[0] != "SqMask" {
		return Uring{}, fmt.Errorf("parse io_uring fdinfo: %w: begins with %s, not SqMask", ErrSyntax, order[0])
	}
	switch {
	case u.SqMask&(u.SqMask+1) != 0 || u.CqMask&(u.CqMask+1) != 0:
		err = fmt.Errorf("masks %#x, %#x are not a power of two less one", u.SqMask, u.CqMask)
	case seen["SQEs"] > int(min(u.SQEs, u.SqMask+1)) || seen["CQEs"] > int(min(u.CQEs, u.CqMask+1)):
		err = fmt.Errorf("%d SQE and %d CQE lines for %d SQEs and %d CQEs", seen["SQEs"], seen["CQEs"], u.SQEs, u.CQEs)
	case seen["UserFiles"] > int(u.UserFiles) || seen["UserBufs"] > int(u.UserBufs):
		err = fmt.Errorf("%d file and %d buffer lines for %d files and %d buffers", seen["UserFiles"], seen["UserBufs"], u.UserFiles, u.UserBufs)
	}
	if err != nil {
		return Uring{}, fmt.Errorf("parse io_uring fdinfo: %w: %w", ErrSyntax, err)
	}
	u.Polls, u.Overflow = seen["PollList"], seen["CqOverflowList"]
	return u, nil
}

// parseHex32 parses "0x%x".
func parseHex32(v string) (uint32, error) {
	h, ok := strings.CutPrefix(v, "0x")
	if !ok {
		return 0, fmt.Errorf("%w: %q is not 0x-prefixed", ErrSyntax, v)
	}
	return parseNum[uint32](h, 16)
}

// IOUring parses the io_uring lines of an fdinfo; ErrSyntax wrapped if
// it has none.
func (f Fdinfo) IOUring() (Uring, error) {
	if f.Uring == nil {
		return Uring{}, fmt.Errorf("parse io_uring fdinfo: %w: no SqMask line", ErrSyntax)
	}
	return ParseUring(f.Uring)
}
