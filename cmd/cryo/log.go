package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
)

// newLogger makes the logger of -v N and -o FILE: level 0 and 1 report
// errors and warnings, 2 what each step does, 3 and up every detail. The
// log goes to stderr unless a file is given.
func newLogger(verbosity int, path string, stderr io.Writer) (*clog.Logger, func() error, error) {
	level := clog.LevelWarn
	switch {
	case verbosity >= 3:
		level = clog.LevelDebug
	case verbosity == 2:
		level = clog.LevelInfo
	}
	w, closer := stderr, func() error { return nil }
	if path != "" {
		f, err := openOutput(path, os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log: %w", err)
		}
		w, closer = f, f.Close
		if verbosity < 2 {
			level = clog.LevelInfo // a log file is for reading later
		}
	}
	return clog.New(w, level), closer, nil
}

// logged writes a command's failure into its log file too, if it has one
// (stderr shows it anyway), and returns it.
func logged(log *clog.Logger, logFile string, err error) error {
	if logFile != "" {
		log.Error("failed", "err", err)
	}
	return err
}

// openOutput opens a file that cryo, often as root, writes for the user
// (the log, the pid file): never through a symlink, which could point it
// at a file of root's, and only a regular file, without blocking on a
// FIFO.
func openOutput(path string, flags int, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, uint32(perm))
	if err == unix.ELOOP {
		return nil, fmt.Errorf("%s is a symlink, which cryo does not follow", path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", path)
		}
		return nil, err
	}
	return f, nil
}

// progressBar returns a progress reporter that draws on stderr when it is
// a terminal and the work is large enough to wait for; nil otherwise.
func progressBar(stderr io.Writer, what string) func(done, total uint64) {
	f, ok := stderr.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	const minTotal = 64 << 20
	last := -1
	return func(done, total uint64) {
		if total < minTotal {
			return
		}
		pct := int(done * 100 / total)
		if pct == last {
			return
		}
		last = pct
		fmt.Fprintf(f, "\r%s: %d/%d MiB (%d%%)", what, done>>20, total>>20, pct)
		if done == total {
			fmt.Fprintln(f)
		}
	}
}

// size says a number of bytes in KiB, MiB or GiB, whichever reads best.
func size(n uint64) string {
	switch {
	case n < 1<<20:
		return fmt.Sprintf("%d KiB", n>>10)
	case n < 10<<30:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d GiB", n>>30)
}

// peakRSS is cryo's own peak resident memory in KiB, for the benchmarks.
// It is the VmHWM of /proc/self/status: getrusage's figure also counts
// what the process that started cryo had resident when it forked it.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}
