package main

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// capNames are the capabilities dump and restore cannot work without, by
// what they are needed for.
var capNames = map[int]string{
	unix.CAP_SYS_PTRACE: "CAP_SYS_PTRACE (trace the process)",
	unix.CAP_SYS_ADMIN:  "CAP_SYS_ADMIN (choose PIDs, time namespaces)",
	unix.CAP_SETUID:     "CAP_SETUID (give the process its user ids)",
	unix.CAP_SETGID:     "CAP_SETGID (give the process its groups)",
}

// requirePrivilege says, before anything starts, that cryo must run as
// root with the capabilities caps, naming those it lacks.
func requirePrivilege(caps ...int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (uid %d now)", os.Geteuid())
	}
	st, err := proc.ReadStatus(os.Getpid())
	if err != nil {
		return err
	}
	var missing []string
	for _, c := range caps {
		if st.CapEff&(1<<c) == 0 {
			missing = append(missing, capNames[c])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("runs as root without %s", strings.Join(missing, ", "))
	}
	return nil
}
