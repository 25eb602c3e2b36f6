package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/cryo-cr/cryo/internal/netlock"
)

func init() {
	commands["unlock"] = command{
		summary: "list the network locks dumps kept, or remove them",
		run:     runUnlock,
	}
}

const unlockHelp = `While TCP connections are checkpointed, their packets are dropped by a
network lock, an nftables table named cryo-ID, so that the peers see
neither a reset nor a FIN. A dump that ends with its target killed keeps
the lock until the restore removes it. Without arguments, lists the ids
of the kept locks; with ids, removes those locks, whose connections then
pass again (an id with no lock is not an error). A lock still held by a
running cryo is not removed: it goes when that cryo ends.`

func runUnlock(args []string, stdout io.Writer) error {
	fs := newFlagSet("unlock", "[ID]...", unlockHelp)
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := requirePrivilege(); err != nil {
		return err
	}
	if len(ids) == 0 {
		kept, err := netlock.Locks()
		if err != nil {
			return err
		}
		for _, id := range kept {
			fmt.Fprintln(stdout, id)
		}
		return nil
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, netlock.Unlock(id))
	}
	return errors.Join(errs...)
}
