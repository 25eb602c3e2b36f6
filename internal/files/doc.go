// Package files owns open files: for each kind of descriptor a process
// can hold (regular file, directory, device, unlinked file, pipe, FIFO,
// eventfd, epoll, memfd, terminal, unix socket), what it is in CRIU's images, how it is dumped
// and how it is restored, side by side in one file per kind.
//
// The kinds are reached through one table (kinds.go), keyed by the
// image's file type. A dump builds a Table: every descriptor is offered to
// the kinds in turn and the one that claims it records it. A restore
// loads a Set from the images, checks every entry with its kind before
// anything is built, and a Restorer reopens every entry in the process
// being restored and puts each descriptor at its number. The dump and
// restore pipelines iterate; adding a kind means adding a file here and a
// row to the table.
//
// File locks (lock.go) are not a kind but ride along: the Table records
// those of each open file description, and the Restorer takes them again
// once every descriptor has its number.
package files
