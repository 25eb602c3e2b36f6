package proc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// eachLine calls fn on every line of b without its newline (the last one
// may lack it) and tags fn's error with the line.
func eachLine(b []byte, fn func(line []byte) error) error {
	n := 0
	for line := range bytes.Lines(b) {
		n++
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if err := fn(line); err != nil {
			return fmt.Errorf("line %d %q: %w", n, line, err)
		}
	}
	return nil
}

// field is a known key of a file of "Key:\tvalue" lines (status, fdinfo,
// the body of an smaps entry) and the parser of its raw value, the text
// after the colon.
type field struct {
	key string
	// optional keys are missing on some kernels or for some tasks.
	optional bool
	parse    func(v string) error
}

// parseFields runs the parser of each known key of b. Every line needs a
// colon; a known key must appear exactly once unless optional; unknown keys
// go to other, or are skipped when other is nil, so that newer kernels'
// additions do not break us.
func parseFields(b []byte, fields []field, other func(key, value string)) error {
	seen := make([]bool, len(fields))
	err := eachLine(b, func(line []byte) error {
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return fmt.Errorf("%w: no colon", ErrSyntax)
		}
		for i, f := range fields {
			if f.key != string(k) {
				continue
			}
			if seen[i] {
				return fmt.Errorf("%w: repeated key", ErrSyntax)
			}
			seen[i] = true
			return f.parse(string(v))
		}
		if other != nil {
			other(string(k), strings.Trim(string(v), " \t"))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, f := range fields {
		if !seen[i] && !f.optional {
			return fmt.Errorf("%w: no %s line", ErrSyntax, f.key)
		}
	}
	return nil
}

type integer interface {
	~int | ~int32 | ~int64 | ~uint32 | ~uint64
}

// bitSize is the width of an integer type: the number of left shifts of
// 1 before it overflows to 0.
func bitSize[T integer](zero T) int {
	n := 0
	for v := T(1); v != 0; v <<= 1 {
		n++
	}
	return n
}

// parseNum parses s in base into T, rejecting values that do not fit.
func parseNum[T integer](s string, base int) (T, error) {
	var zero T
	bits := bitSize(zero)
	if ^zero < 0 { // signed
		v, err := strconv.ParseInt(s, base, bits)
		if err != nil {
			return 0, fmt.Errorf("%w: number %q", ErrSyntax, s)
		}
		return T(v), nil
	}
	v, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%w: number %q", ErrSyntax, s)
	}
	return T(v), nil
}

// num is the parser of one number, with blanks around it.
func num[T integer](p *T, base int) func(string) error {
	return func(v string) (err error) {
		*p, err = parseNum[T](strings.Trim(v, " \t"), base)
		return err
	}
}

// nums parses a blank-separated list of decimal numbers; none gives nil.
func nums[T integer](v string) ([]T, error) {
	var list []T
	for _, s := range strings.Fields(v) {
		x, err := parseNum[T](s, 10)
		if err != nil {
			return nil, err
		}
		list = append(list, x)
	}
	return list, nil
}

// numList is the parser of a list of decimal numbers.
func numList[T integer](p *[]T) func(string) error {
	return func(v string) (err error) {
		*p, err = nums[T](v)
		return err
	}
}

// numArray is the parser of exactly len(a) decimal numbers.
func numArray[T integer](a []T) func(string) error {
	return func(v string) error {
		list, err := nums[T](v)
		if err != nil {
			return err
		}
		if len(list) != len(a) {
			return fmt.Errorf("%w: %d numbers, want %d", ErrSyntax, len(list), len(a))
		}
		copy(a, list)
		return nil
	}
}
