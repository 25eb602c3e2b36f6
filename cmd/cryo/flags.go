package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
)

// newFlagSet returns a flag set whose usage message names the command.
func newFlagSet(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("cryo "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cryo %s %s\n\n%s\n\nflags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags wherever they appear among the positional
// arguments, as users of criu-like tools expect, and returns the
// positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageErrorf prints a usage problem and the command's usage.
func usageErrorf(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(fs.Output(), "cryo: "+format+"\n", a...)
	fs.Usage()
	return errUsage
}

// criuFlags are criu options that cryo accepts on dump and restore, so
// that criu command lines (container runtimes, scripts) work unchanged.
type criuFlags struct {
	// linkRemap is criu's --link-remap: at dump, a file unlinked but
	// still linked elsewhere is linked back for the restore (without it,
	// such a file is refused, as criu does). A restore needs nothing.
	linkRemap bool
	// tcpClose is criu's --tcp-close: a restore makes established TCP
	// connections closed sockets and removes their lock. A dump needs
	// nothing: it keeps the connections either way.
	tcpClose bool
	// extUnixSk is criu's --ext-unix-sk: at dump, a datagram unix socket
	// connected to a bound socket outside the checkpoint is kept, and
	// connected to that name again at restore (without it, refused).
	extUnixSk bool
	// tcpSkipInFlight is criu's --skip-in-flight: at dump, the
	// connections TCP listeners have not accepted yet are left behind
	// (without it, refused).
	tcpSkipInFlight bool
	// ghostLimit is criu's --ghost-limit: at dump, the largest unlinked
	// file with no name left that is saved (a larger one is refused); 0,
	// the default, for any (criu's default is 1 MiB).
	ghostLimit byteSize
	// manageCgroups is criu's --manage-cgroups: "ignore" restores every
	// process into cryo's cgroups; the default puts each back into its
	// own, which must exist (as criu's "strict", but that a restore
	// changes no cgroup's properties).
	manageCgroups string
}

// addCriuFlags adds the criu options cryo accepts to fs.
func addCriuFlags(fs *flag.FlagSet) *criuFlags {
	var c criuFlags
	var none bool // options whose behaviour is cryo's default or moot
	fs.BoolVar(&none, "file-locks", false, "accepted for criu compatibility: file locks are always dumped and taken again")
	fs.BoolVar(&c.linkRemap, "link-remap", false, "dump: link a file unlinked but still linked elsewhere back beside its old name (link_remap.ID) for the restore, which removes it; refused without it, as by criu (restore: no effect)")
	fs.BoolVar(&none, "tcp-established", false, "accepted for criu compatibility: established TCP connections are always dumped and restored")
	fs.BoolVar(&c.tcpClose, "tcp-close", false, "restore: established TCP connections come back closed both ways (reads find the end of the stream, writes EPIPE), and their network lock goes (dump: no effect)")
	fs.BoolVar(&c.extUnixSk, "ext-unix-sk", false, "dump: keep a datagram unix socket connected to a bound one outside the checkpoint (the system logger's), connected to its name again at restore; refused without it, as by criu (restore: no effect)")
	fs.BoolVar(&c.tcpSkipInFlight, "skip-in-flight", false, "dump: leave behind the connections TCP listeners have not accepted yet (their clients find them reset once the dumped process ends), each listener said in the log; refused without it, as by criu (restore: no effect)")
	fs.BoolVar(&none, "force-irmap", false, "accepted for criu compatibility: the path of every inode an inotify or fanotify mark is on is always found, through its file handle")
	var scanPath string
	fs.StringVar(&scanPath, "irmap-scan-path", "", "accepted for criu compatibility: no effect, as cryo finds marked inodes through their file handles and scans no directory")
	fs.Var(&c.ghostLimit, "ghost-limit", "dump: the largest unlinked file with no name left that is saved, in bytes or with a K, M or G suffix; a larger one is refused, as by criu (default: any; restore: no effect)")
	fs.BoolVar(&none, "ghost-fiemap", false, "accepted for criu compatibility: an unlinked file's holes are always found, with SEEK_DATA and SEEK_HOLE")
	fs.BoolVar(&none, "no-ghost-fiemap", false, "accepted for criu compatibility: as --ghost-fiemap")
	fs.Var((*cgroupMode)(&c.manageCgroups), "manage-cgroups", "restore: \"ignore\" leaves every process in cryo's cgroups; by default each goes back into the cgroups it was in, which must exist; without a mode, criu's soft, which would make cgroups and is refused (dump: no effect)")
	return &c
}

// cgroupMode is the value of --manage-cgroups, which criu lets go
// without one, meaning its soft mode.
type cgroupMode string

func (m *cgroupMode) String() string { return string(*m) }

func (m *cgroupMode) Set(s string) error {
	if s == "true" { // the option alone
		s = "soft"
	}
	*m = cgroupMode(s)
	return nil
}

// IsBoolFlag lets the option come without a value, as in criu.
func (m *cgroupMode) IsBoolFlag() bool { return true }

// byteSize is a size in bytes, given as a number with an optional K, M or
// G suffix (powers of 1024), as criu takes them.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	shift := 0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		}
		if shift > 0 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64>>shift {
		return fmt.Errorf("%q is not a size in bytes", s)
	}
	*b = byteSize(v << shift)
	return nil
}
