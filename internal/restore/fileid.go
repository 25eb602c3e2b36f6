package restore

import (
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// verifyFiles checks, before anything is built, that every file the
// process gets by path is the one dumped and one it may have, and opens
// it for the steps that hand it over (files.Set.Verify): descriptors,
// file mappings, the executable and the working directory. tree are the
// pids of the processes of the checkpoint, zombies too.
func (r *restorer) verifyFiles(tree map[uint32]bool) error {
	c := r.c
	need := map[uint32]uint32{}
	for v := range c.vmas.all() {
		st := v.status
		if st&(image.VMAFilePrivate|image.VMAFileShared) == 0 || st&image.VMAAreaMemfd != 0 {
			continue
		}
		// As mapVMAs opens it: for writing too if shared and open so.
		id := uint32(v.shmid)
		need[id] |= unix.R_OK
		if st&image.VMAFileShared != 0 && c.files.File(id).GetReg().GetFlags()&unix.O_ACCMODE == unix.O_RDWR {
			need[id] |= unix.W_OK
		}
	}
	need[c.mm.GetExeFileId()] |= unix.R_OK | unix.X_OK
	need[c.fs.GetCwdId()] |= unix.X_OK
	// The process gets the leader's credentials; an image without them
	// leaves it cryo's (restoreCreds), and so are the checks.
	fsCreds, err := kernel.ThreadFsCreds()
	if err != nil {
		return err
	}
	if cr := c.cores[uint32(c.pid)].ThreadCore.GetCreds(); cr != nil {
		fsCreds = kernel.FsCreds{Fsuid: cr.GetFsuid(), Fsgid: cr.GetFsgid(), Groups: cr.Groups, Effective: capBits(cr.CapEff)}
	}
	return c.files.Verify(need, files.VerifyOptions{Pid: c.pid, Tree: tree, Creds: fsCreds, AllowChanged: r.opts.AllowChanged, Log: r.log})
}
