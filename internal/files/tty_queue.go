package files

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The data queued in a pseudo-terminal is what its slave would read (its
// input, written to the master) and what its master would read (the
// slave's output). The kernel shows it to no one but a reader, so a dump
// reads it and writes it straight back, and a restore writes it into the
// new pair. Either way it goes in as it came out: with the line
// discipline's processing off (no echo, no character mapping, no
// signals, no output processing), so that nothing is done to it twice,
// and, in canonical mode, with its line ends (newline, EOL, EOL2, or an
// end-of-file mark, kept as the EOF character) delimiting the same lines.

// queued is the data of a pseudo-terminal: what each end would read.
type queued struct{ toSlave, toMaster []byte }

// queueWait bounds the wait for data on its way through a terminal's
// buffers: a write reaches the line discipline by a kernel worker.
const queueWait = time.Second

// takeQueued reads the data queued in the pseudo-terminal whose master
// and slave cryo holds as m and s, with settings tio, and puts it back.
// Packet mode, where reads carry status bytes, and external processing
// (EXTPROC) are refused when anything is queued.
func takeQueued(m, s int, tio *unix.Termios, packet bool) (queued, error) {
	var q queued
	if packet || tio.Lflag&unix.EXTPROC != 0 {
		// Neither needs a change of settings to see all the data: the
		// counts cover partial lines under EXTPROC, and a packet-mode
		// master's pending status shows as POLLPRI.
		inM, err1 := unix.IoctlGetInt(m, unix.TIOCINQ)
		inS, err2 := unix.IoctlGetInt(s, unix.TIOCINQ)
		pfd := []unix.PollFd{{Fd: int32(m), Events: unix.POLLPRI}}
		_, err3 := unix.Poll(pfd, 0)
		if err := errors.Join(err1, err2, err3); err != nil {
			return q, err
		}
		if inM > 0 || inS > 0 || pfd[0].Revents&unix.POLLPRI != 0 && packet {
			return q, fmt.Errorf("%w: data or status queued in a pseudo-terminal in packet or external-processing mode", ErrUnsupported)
		}
		return q, nil
	}
	var err error
	if q.toMaster, err = drainRaw(m); err != nil {
		return q, fmt.Errorf("read the slave's output: %w", err)
	}
	toSlave, exact, err := drainSlave(s, tio)
	q.toSlave = toSlave
	if err != nil {
		err = fmt.Errorf("read the slave's input: %w", err)
	}
	if perr := putQueued(m, s, tio, q); perr != nil {
		return q, errors.Join(err, fmt.Errorf("put back the queued data: %w", perr))
	}
	if err == nil && !exact {
		err = fmt.Errorf("%w: a line queued in a pseudo-terminal holds a line end that was quoted (VLNEXT)", ErrUnsupported)
	}
	return q, err
}

// readable waits up to d for fd to have something to read: a reader
// then does not block.
func readable(fd int, d time.Duration) (bool, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int(d.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return n > 0 && pfd[0].Revents&unix.POLLIN != 0, err
	}
}

// drainSettle is how long a drain waits for more once a terminal has
// nothing left to read: what a writer wrote last may still be on its way.
const drainSettle = 10 * time.Millisecond

// drainRaw reads all a terminal end in non-canonical mode, with VMIN at
// most 1, has to read: never more than it counts, so that no read waits.
func drainRaw(fd int) ([]byte, error) {
	var out []byte
	settled := false
	for {
		n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
		switch {
		case err != nil:
			return out, err
		case n == 0 && settled:
			return out, nil
		case n == 0:
			time.Sleep(drainSettle)
			settled = true
			continue
		}
		settled = false
		buf := make([]byte, n)
		k, err := unix.Read(fd, buf)
		if err != nil {
			return out, err
		}
		out = append(out, buf[:k]...)
	}
}

// lineEnd reports whether c ends a canonical line under tio (the EOF
// character aside, which the kernel does not store).
func lineEnd(c byte, tio *unix.Termios) bool {
	return c == '\n' || c != 0 && c == tio.Cc[unix.VEOL] || c != 0 && c == tio.Cc[unix.VEOL2] && tio.Lflag&unix.IEXTEN != 0
}

// drainSlave reads all the slave has to read. In canonical mode a read
// returns one line, with its end but for an end-of-file mark, which is
// put back as the EOF character; a partial line, which no count shows,
// is read once the complete ones are gone, in non-canonical mode (where
// a non-canonical slave's data is read too, VMIN at 0 so that no read
// waits). exact
// is false when the lines could not come back the same: a line end or
// EOF character quoted inside a line.
//
// It drains with transparent settings: what waited behind the line
// discipline's buffer comes in as it is while the buffer empties, neither
// echoed nor acted on (a signal character), and is put back as it was.
func drainSlave(s int, tio *unix.Termios) (data []byte, exact bool, err error) {
	exact = true
	// IXON stays: turning it off restarts a terminal stopped by its
	// STOP character.
	quiet := transparent(tio)
	quiet.Iflag |= tio.Iflag & unix.IXON
	if err := unix.IoctlSetTermios(s, unix.TCSETS2, quiet); err != nil {
		return nil, exact, err
	}
	defer func() {
		if err2 := unix.IoctlSetTermios(s, unix.TCSETS2, tio); err == nil {
			err = err2
		}
	}()
	buf := make([]byte, 8192)
	for tio.Lflag&unix.ICANON != 0 {
		ok, err := readable(s, drainSettle)
		if err != nil {
			return data, exact, err
		}
		if !ok {
			break
		}
		n, err := unix.Read(s, buf)
		if err != nil {
			return data, exact, err
		}
		line := buf[:n]
		body := line
		if n > 0 && lineEnd(line[n-1], tio) {
			body = line[:n-1]
		} else {
			line = append(line, tio.Cc[unix.VEOF])
		}
		for _, c := range body {
			if lineEnd(c, tio) || isEOF(c, tio) {
				exact = false
			}
		}
		data = append(data, line...)
	}
	raw := *quiet
	raw.Lflag &^= unix.ICANON
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 0, 0
	if err := unix.IoctlSetTermios(s, unix.TCSETS2, &raw); err != nil {
		return data, exact, err
	}
	partial, err := drainRaw(s)
	data = append(data, partial...)
	for _, c := range partial {
		if isEOF(c, tio) {
			exact = false
		}
	}
	return data, exact, err
}

// transparent is tio without what the line discipline does to input:
// no mapping, flow control, signals or echo; in canonical mode only the
// line ends and the EOF character are special.
func transparent(tio *unix.Termios) *unix.Termios {
	t := *tio
	t.Iflag = 0
	t.Lflag &= unix.ICANON | unix.IEXTEN
	for i := range t.Cc {
		switch i {
		case unix.VEOF, unix.VEOL, unix.VEOL2, unix.VMIN, unix.VTIME:
		default:
			t.Cc[i] = 0 // _POSIX_VDISABLE
		}
	}
	return &t
}

// putQueued writes q into the pseudo-terminal whose master and slave cryo
// holds as m and s, and leaves it with settings tio, even when it fails.
func putQueued(m, s int, tio *unix.Termios, q queued) (err error) {
	defer func() {
		if err2 := unix.IoctlSetTermios(m, unix.TCSETS2, tio); err == nil {
			err = err2
		}
	}()
	if len(q.toSlave) > 0 {
		// What the line discipline held went through it already; what
		// waited behind it goes through it when the reader makes room,
		// with the settings then.
		held, rest := q.toSlave[:min(len(q.toSlave), lineBufMax)], q.toSlave[min(len(q.toSlave), lineBufMax):]
		if err := unix.IoctlSetTermios(m, unix.TCSETS2, transparent(tio)); err != nil {
			return err
		}
		if err := writeQueued(m, held); err != nil {
			return err
		}
		if err := awaitInput(s, tio, held); err != nil {
			return err
		}
		if len(rest) > 0 {
			if err := unix.IoctlSetTermios(m, unix.TCSETS2, tio); err != nil {
				return err
			}
			if err := writeQueued(m, rest); err != nil {
				return err
			}
		}
	}
	if len(q.toMaster) > 0 {
		out := *tio
		out.Oflag &^= unix.OPOST
		if err := unix.IoctlSetTermios(m, unix.TCSETS2, &out); err != nil {
			return err
		}
		if err := writeQueued(s, q.toMaster); err != nil {
			return err
		}
		if err := awaitCount(m, min(len(q.toMaster), lineBufMax)); err != nil {
			return err
		}
	}
	return nil
}

// A terminal end's reader reads from its line discipline's buffer, which
// holds at most lineBufMax bytes (N_TTY_BUF_SIZE, include/linux/tty.h,
// less one), processed as they came in; what does not fit waits, as it
// came, in the terminal's own buffers, which no count shows, up to a
// limit the kernel charges by the write: what a program queued in small
// writes (16 KiB more) comes back whole only in small writes too.
const (
	lineBufMax = 4095
	queueChunk = 1024
)

// writeQueued writes data to the terminal end fd, in chunks of queueChunk,
// never blocking: a chunk that finds no room waits, up to queueWait, for
// the line discipline to take in what came before. fd's file status flags
// are left as they were (a dump's is the process's own description).
func writeQueued(fd int, data []byte) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if flags&unix.O_NONBLOCK == 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_NONBLOCK); err != nil {
			return err
		}
		defer unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
	}
	deadline := time.Now().Add(queueWait)
	for done := 0; done < len(data); {
		n, err := unix.Write(fd, data[done:min(done+queueChunk, len(data))])
		switch {
		case err == unix.EAGAIN && time.Now().Before(deadline):
			time.Sleep(time.Millisecond)
		case err == unix.EAGAIN:
			return fmt.Errorf("%d of %d bytes written: no room for more in %v", done, len(data), queueWait)
		case err != nil:
			return fmt.Errorf("%d of %d bytes written: %w", done, len(data), err)
		default:
			done += n
			deadline = time.Now().Add(queueWait)
		}
	}
	return nil
}

// awaitCount waits until fd has n bytes to read, as counted in its mode.
func awaitCount(fd, n int) error {
	deadline := time.Now().Add(queueWait)
	for {
		got, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
		if err != nil || got >= n {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d bytes written, %d arrived", n, got)
		}
		time.Sleep(time.Millisecond)
	}
}

// awaitInput waits until data written to the master has reached the
// slave's line discipline, before its settings change back. In canonical
// mode the count covers complete lines only, without their end-of-file
// marks, so a tail after the last line end, or a mark, is given a moment
// more.
func awaitInput(s int, tio *unix.Termios, data []byte) error {
	if tio.Lflag&unix.ICANON == 0 {
		return awaitCount(s, len(data))
	}
	last, marks := -1, 0
	for i, c := range data {
		switch {
		case isEOF(c, tio):
			last, marks = i, marks+1
		case lineEnd(c, tio):
			last = i
		}
	}
	if err := awaitCount(s, last+1-marks); err != nil {
		return err
	}
	if last != len(data)-1 || marks > 0 {
		time.Sleep(drainSettle)
	}
	return nil
}

// isEOF reports whether c is the EOF character of tio.
func isEOF(c byte, tio *unix.Termios) bool { return c != 0 && c == tio.Cc[unix.VEOF] }
