package proc

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Timerfd is what a timerfd's fdinfo says of it.
type Timerfd struct {
	// Clockid is the clock the timer was made on (CLOCK_*).
	Clockid int32
	// Ticks are the expirations not read yet. A periodic timer that
	// expired counts one until it is read or timerfd_gettime is called
	// on it, which adds the periods since.
	Ticks uint64
	// SettimeFlags are the TFD_TIMER_* flags of the last timerfd_settime.
	SettimeFlags uint32
	// Value is the time left until the next expiration, 0 when the timer
	// is disarmed or has expired; Interval is its period, 0 for a
	// one-shot timer.
	Value, Interval time.Duration
}

// Timerfd parses the timerfd lines of an fdinfo. The kernel writes
//
//	clockid: %d
//	ticks: %llu
//	settime flags: 0%o
//	it_value: (%llu, %llu)
//	it_interval: (%llu, %llu)
func (f Fdinfo) Timerfd() (Timerfd, error) {
	var tf Timerfd
	for _, l := range []struct {
		key   string
		parse func(v string) error
	}{
		{"clockid", func(v string) (err error) { tf.Clockid, err = parseNum[int32](v, 10); return err }},
		{"ticks", func(v string) (err error) { tf.Ticks, err = parseNum[uint64](v, 10); return err }},
		{"settime flags", func(v string) (err error) { tf.SettimeFlags, err = parseNum[uint32](v, 8); return err }},
		{"it_value", func(v string) (err error) { tf.Value, err = parseTimespec(v); return err }},
		{"it_interval", func(v string) (err error) { tf.Interval, err = parseTimespec(v); return err }},
	} {
		v, ok := f.Lookup(l.key)
		if !ok {
			return tf, fmt.Errorf("%w: no %s line", ErrSyntax, l.key)
		}
		if err := l.parse(v); err != nil {
			return tf, fmt.Errorf("%s: %w", l.key, err)
		}
	}
	return tf, nil
}

// parseTimespec parses "(SEC, NSEC)". The kernel keeps timers in signed
// 64-bit nanoseconds, so a larger time is not one it wrote.
func parseTimespec(v string) (time.Duration, error) {
	in, ok := strings.CutPrefix(v, "(")
	if in, ok2 := strings.CutSuffix(in, ")"); ok && ok2 {
		if s, ns, ok := strings.Cut(in, ", "); ok {
			sec, err := parseNum[uint64](s, 10)
			if err != nil {
				return 0, err
			}
			nsec, err := parseNum[uint64](ns, 10)
			if err != nil {
				return 0, err
			}
			if nsec >= 1e9 || sec > (math.MaxInt64-nsec)/1e9 {
				return 0, fmt.Errorf("%w: time %q out of range", ErrSyntax, v)
			}
			return time.Duration(sec*1e9 + nsec), nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not (sec, nsec)", ErrSyntax, v)
}
