package dump

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// asks are injected system calls that ask a thread what only it can
// tell, run as one batch: the process stays frozen for one ptrace stop
// rather than one per call (a round trip of 20-35 µs or more here). Their
// answers are read once they have all run: returned, or written into the
// scratch buffer, which is read back at once.
type asks struct {
	tr      *ptrace.Tracer
	tid     int
	scratch uint64
	calls   []ptrace.Sys
	what    []string
	// used is how much of the scratch buffer the answers take.
	used uint64
	// out is the scratch buffer once the calls have run.
	out []byte
}

// newAsks starts a batch of asks to thread tid.
func (d *dumper) newAsks(tid int) (*asks, error) {
	scratch, err := d.tr.Scratch(tid)
	if err != nil {
		return nil, err
	}
	return &asks{tr: d.tr, tid: tid, scratch: scratch}, nil
}

// room reports whether n more bytes of answers fit the scratch buffer.
func (a *asks) room(n uint64) bool { return a.used+(n+7)&^7 <= ptrace.ScratchSize }

// buf hands out n bytes of the scratch buffer, which the caller checked
// there is room for, for an answer.
func (a *asks) buf(n uint64) uint64 {
	addr := a.scratch + a.used
	a.used += (n + 7) &^ 7
	return addr
}

// ask adds system call nr; what names what it asks, for errors. A call
// that may fail leaves its error to ret, the others fail run. It returns
// the call's index, for ret.
func (a *asks) ask(what string, mayFail bool, nr int, args ...uint64) int {
	c := ptrace.Sys{Nr: nr, MayFail: mayFail}
	copy(c.Args[:], args)
	a.calls = append(a.calls, c)
	a.what = append(a.what, what)
	return len(a.calls) - 1
}

// run injects the calls and reads the answers in the scratch buffer.
func (a *asks) run() error {
	if len(a.calls) == 0 {
		return nil
	}
	if a.used > ptrace.ScratchSize {
		return fmt.Errorf("%d bytes of answers do not fit the scratch buffer", a.used)
	}
	if err := a.tr.Syscalls(a.tid, a.calls); err != nil {
		var se *ptrace.SyscallError
		if errors.As(err, &se) {
			err = fmt.Errorf("get %s of tid %d: %w", a.what[se.Index], a.tid, se.Err)
		}
		return err
	}
	a.out = make([]byte, a.used)
	return a.tr.ReadMem(a.scratch, a.out)
}

// ret returns what call i returned, or its error.
func (a *asks) ret(i int) (uint64, error) {
	if err := a.calls[i].Failed(); err != nil {
		return 0, fmt.Errorf("get %s of tid %d: %w", a.what[i], a.tid, err)
	}
	return a.calls[i].Ret, nil
}

// value decodes the answer at addr, handed out by buf, into v.
func (a *asks) value(addr uint64, v any) error {
	off := addr - a.scratch
	return kernel.Decode(a.out[off:off+uint64(binary.Size(v))], v)
}
