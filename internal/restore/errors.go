package restore

import (
	"errors"

	"github.com/cryo-cr/cryo/internal/files"
)

var (
	// ErrImage is wrapped by every error about an image directory that is
	// incomplete, corrupt, or inconsistent. It is the files package's
	// own, which checks the file images.
	ErrImage = files.ErrImage
	// ErrUnsupported means the checkpoint holds state this version cannot
	// restore.
	ErrUnsupported = files.ErrUnsupported
	// ErrLocked means a lock of the checkpoint is held by another process
	// at restore; the message names it.
	ErrLocked = files.ErrLocked
	// ErrPidTaken means the dumped PID or a TID is in use.
	ErrPidTaken = errors.New("pid in use")
	// ErrSysvShmTaken means the id of a System V shared memory segment
	// of the checkpoint is another segment's now.
	ErrSysvShmTaken = errors.New("id of System V shared memory taken")
	// ErrSysvShmDenied means a process may not attach a System V shared
	// memory segment that is still there with its restored credentials.
	ErrSysvShmDenied = errors.New("no permission to attach System V shared memory")
	// ErrSysvIPCTaken means the id or key of a System V semaphore set or
	// message queue of the checkpoint is another object's now.
	ErrSysvIPCTaken = errors.New("id or key of System V IPC object taken")
	// ErrInjected is the failure of a step that Options.FailAt names.
	ErrInjected = errors.New("injected failure")
)
