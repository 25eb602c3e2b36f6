package proc

import "fmt"

// Signalfd parses the "sigmask" line of a signalfd's fdinfo: the signals
// it reads, bit N-1 for signal N, in hex.
func (f Fdinfo) Signalfd() (uint64, error) {
	v, ok := f.Lookup("sigmask")
	if !ok {
		return 0, fmt.Errorf("%w: no sigmask line", ErrSyntax)
	}
	m, err := parseNum[uint64](v, 16)
	if err != nil {
		return 0, fmt.Errorf("sigmask: %w", err)
	}
	return m, nil
}
