package main

import (
	"flag"
	"fmt"
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
