package proc

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"
)

// uringSeeds are captures of io_uring fdinfo of this machine (Linux
// 6.18): an idle ring after three NOPs; one with two CQEs not reaped and
// an SQE not submitted; a poll armed on an empty pipe; a ring of one
// entry whose third NOP overflowed; registered files and buffers; and
// MariaDB's ring, as measured.
var uringSeeds = []string{
	"fdinfo-uring-idle.txt", "fdinfo-uring-pending.txt", "fdinfo-uring-poll.txt",
	"fdinfo-uring-overflow.txt", "fdinfo-uring-registered.txt", "fdinfo-uring-mariadb.txt",
}

func TestIOUring(t *testing.T) {
	idle := Uring{SqMask: 7, SqHead: 3, SqTail: 3, CachedSqHead: 3, CqMask: 15, CqHead: 3, CqTail: 3, CachedCqTail: 3, SqThread: -1, SqThreadCpu: -1, NAPI: "disabled"}
	pending := idle
	pending.SqHead, pending.SqTail, pending.CachedSqHead, pending.CqTail, pending.CachedCqTail, pending.SQEs, pending.CQEs = 5, 6, 5, 5, 5, 1, 2
	poll := Uring{SqMask: 3, SqHead: 1, SqTail: 1, CachedSqHead: 1, CqMask: 7, SqThread: -1, SqThreadCpu: -1, Polls: 1, NAPI: "disabled"}
	overflow := Uring{SqMask: 0, SqHead: 3, SqTail: 3, CachedSqHead: 3, CqMask: 1, CqTail: 2, CachedCqTail: 2, CQEs: 2, SqThread: -1, SqThreadCpu: -1, Overflow: 1, NAPI: "disabled"}
	registered := Uring{SqMask: 3, CqMask: 7, SqThread: -1, SqThreadCpu: -1, UserFiles: 2, UserBufs: 1, NAPI: "disabled"}
	mariadb := Uring{SqMask: 0x7ff, SqHead: 17, SqTail: 17, CachedSqHead: 17, CqMask: 0xfff, CqHead: 17, CqTail: 17, CachedCqTail: 17, SqThread: -1, SqThreadCpu: -1, NAPI: "disabled"}
	for _, tc := range []struct {
		seed string
		want Uring
	}{
		{"fdinfo-uring-idle.txt", idle},
		{"fdinfo-uring-pending.txt", pending},
		{"fdinfo-uring-poll.txt", poll},
		{"fdinfo-uring-overflow.txt", overflow},
		{"fdinfo-uring-registered.txt", registered},
		{"fdinfo-uring-mariadb.txt", mariadb},
	} {
		f, err := ParseFdinfo(readSeed(t, tc.seed))
		if err != nil {
			t.Fatalf("%s: %v", tc.seed, err)
		}
		got, err := f.IOUring()
		if err != nil {
			t.Errorf("%s: %v", tc.seed, err)
			continue
		}
		if !uringEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.seed, got, tc.want)
		}
	}
}

func uringEqual(a, b Uring) bool { return reflect.DeepEqual(a, b) }

func TestIOUringErrors(t *testing.T) {
	good := readSeed(t, "fdinfo-uring-pending.txt")
	i := bytes.Index(good, []byte("SqMask"))
	body := string(good[i:])
	for _, tc := range []struct{ name, from, to string }{
		{"truncated", "CqOverflowList:\nNAPI:\tdisabled\n", ""},
		{"no SqHead", "SqHead:\t5\n", ""},
		{"repeated key", "SqHead:\t5\n", "SqHead:\t5\nSqHead:\t5\n"},
		{"bad number", "CqTail:\t5\n", "CqTail:\t5x\n"},
		{"negative", "CqTail:\t5\n", "CqTail:\t-5\n"},
		{"mask not hex", "SqMask:\t0x7\n", "SqMask:\t7\n"},
		{"mask not 2^n-1", "SqMask:\t0x7\n", "SqMask:\t0x5\n"},
		{"more SQE lines", "CQEs:", "    6: opcode:NOP\nCQEs:"},
		{"more file lines", "UserBufs:", "    0: pipe:[1]\nUserBufs:"},
		{"value on PollList", "PollList:", "PollList: 1"},
		{"out of order", "SqTail:\t6\nCachedSqHead:\t5\n", "CachedSqHead:\t5\nSqTail:\t6\n"},
		{"no colon", "NAPI:\tdisabled", "NAPI disabled"},
		{"entry first", "SqMask:", "  x\nSqMask:"},
	} {
		b := []byte(replaceOnce(t, body, tc.from, tc.to))
		if got, err := ParseUring(b); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %+v, %v; want ErrSyntax", tc.name, got, err)
		}
	}
	if _, err := (Fdinfo{}).IOUring(); !errors.Is(err, ErrSyntax) {
		t.Errorf("not an io_uring: %v", err)
	}
	// A newer kernel's section is kept by name.
	u, err := ParseUring([]byte(body + "Personalities:\n    1\n"))
	if err != nil || !slices.Equal(u.Other, []string{"Personalities"}) {
		t.Errorf("unknown section: %+v, %v", u, err)
	}
}

func replaceOnce(t *testing.T, s, from, to string) string {
	t.Helper()
	i := bytes.Index([]byte(s), []byte(from))
	if i < 0 {
		t.Fatalf("%q not in the seed", from)
	}
	return s[:i] + to + s[i+len(from):]
}

func FuzzIOUring(f *testing.F) {
	for _, name := range uringSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseFdinfo(b)
		if checkFuzzErr(t, err) {
			return
		}
		u, err := info.IOUring()
		if checkFuzzErr(t, err) {
			return
		}
		if u.SqMask&(u.SqMask+1) != 0 || u.CqMask&(u.CqMask+1) != 0 {
			t.Fatalf("masks %#x %#x accepted", u.SqMask, u.CqMask)
		}
	})
}
