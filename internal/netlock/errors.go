package netlock

import "errors"

var (
	// ErrBadID is an id that cannot name an nftables table.
	ErrBadID = errors.New("bad lock id")
	// ErrBadConn is a connection whose addresses cannot be matched: not
	// set, port 0, or one end IPv4 and the other IPv6.
	ErrBadConn = errors.New("bad connection")
	// ErrExists is a kept lock of that id.
	ErrExists = errors.New("lock exists")
	// ErrHeld is a lock still held by a running process, which alone may
	// remove it.
	ErrHeld = errors.New("lock held by a running process")
)
