package pb

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is wrapped by every error decoding a message: the bytes
	// are truncated or do not follow the wire format.
	ErrCorrupt = errors.New("corrupt protobuf message")
	// ErrMissingField is wrapped by errors for a message that lacks one of
	// its required fields, encoding or decoding it.
	ErrMissingField = errors.New("required field not set")
)

func corrupt(msg string, field int32) error {
	if field == 0 {
		return fmt.Errorf("decode %s: %w", msg, ErrCorrupt)
	}
	return fmt.Errorf("decode %s field %d: %w", msg, field, ErrCorrupt)
}

func missing(msg, field string) error {
	return fmt.Errorf("%s.%s: %w", msg, field, ErrMissingField)
}
