package main

import (
	"io"

	"github.com/cryo-cr/cryo/internal/check"
)

func init() {
	commands["check"] = command{
		summary: "try every kernel feature cryo needs and report what is missing",
		run:     runCheck,
	}
}

const checkHelp = `Tries, for real and each in a child process with a timeout, every kernel
feature cryo relies on: ptrace seize and syscall injection, rseq
configuration, process_vm_readv/writev, pidfds, clone3 with set_tid,
PR_SET_MM_MAP, userfaultfd, time namespaces, and moving the vDSO. Prints a
line per feature and exits 1 if any is missing. Run it as root, as cryo
itself is.`

func runCheck(args []string, stdout io.Writer) error {
	fs := newFlagSet("check", "", checkHelp)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf(fs, "check takes no arguments, got %q", pos)
	}
	if !check.Run(stdout) {
		return exitError{1}
	}
	return nil
}
