package proc

import (
	"bytes"
	"fmt"
)

// OOM score adjustments run from OOMScoreAdjMin (never killed) to
// OOMScoreAdjMax (killed first).
const (
	OOMScoreAdjMin = -1000
	OOMScoreAdjMax = 1000
)

// ParseOOMScoreAdj parses the contents of /proc/PID/oom_score_adj: one
// decimal number and a newline.
func ParseOOMScoreAdj(b []byte) (int32, error) {
	v, err := parseNum[int32](string(bytes.TrimSuffix(b, []byte{'\n'})), 10)
	if err != nil {
		return 0, fmt.Errorf("parse oom_score_adj: %w", err)
	}
	if v < OOMScoreAdjMin || v > OOMScoreAdjMax {
		return 0, fmt.Errorf("parse oom_score_adj: %w: %d out of range", ErrSyntax, v)
	}
	return v, nil
}

// ReadOOMScoreAdj reads the OOM score adjustment of process pid; pid 0
// means the calling process.
func ReadOOMScoreAdj(pid int) (int32, error) {
	b, err := readSmall(Path(pid, "oom_score_adj"))
	if err != nil {
		return 0, fmt.Errorf("read oom_score_adj: %w", err)
	}
	return ParseOOMScoreAdj(b)
}
