package image

import "errors"

var (
	// ErrMagic means an image does not start with the magic of its kind.
	ErrMagic = errors.New("wrong magic")
	// ErrTruncated means an image ends inside its header, a record length,
	// a record or a payload.
	ErrTruncated = errors.New("truncated image")
	// ErrTooLarge means a record length exceeds MaxRecord: the image is
	// corrupt, and reading on would allocate without bound.
	ErrTooLarge = errors.New("record too large")
	// ErrRecord means a record is not a valid protobuf message of the
	// expected type (bad wire format or a missing required field).
	ErrRecord = errors.New("undecodable record")
	// ErrCount means an image holds more or fewer records than it should.
	ErrCount = errors.New("wrong number of records")
	// ErrPagemap means pagemap entries are inconsistent with themselves or
	// with the pages file they index.
	ErrPagemap = errors.New("inconsistent pagemap")
	// ErrNotEmpty means a directory chosen for a new dump already holds
	// images, which the new ones would mix with.
	ErrNotEmpty = errors.New("directory already holds images")
	// ErrUntrusted means an image directory or image could have been
	// written by someone else than root or the user running cryo, or is
	// not a regular file: restoring from it would do their bidding.
	ErrUntrusted = errors.New("untrusted image")
)
