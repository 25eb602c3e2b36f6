package proc

import (
	"errors"
	"testing"
	"time"
)

// timerfdSeeds are captures of timerfds of this machine: armed periodic,
// periodic expired and not read, absolute on CLOCK_REALTIME.
var timerfdSeeds = []string{"fdinfo-timerfd.txt", "fdinfo-timerfd-expired.txt", "fdinfo-timerfd-abstime.txt"}

func TestTimerfd(t *testing.T) {
	for _, tc := range []struct {
		seed string
		want Timerfd
	}{
		{"fdinfo-timerfd.txt", Timerfd{Clockid: 1, Value: 99*time.Second + 999990189, Interval: time.Second + 500}},
		{"fdinfo-timerfd-expired.txt", Timerfd{Clockid: 1, Ticks: 1, Interval: 2 * time.Millisecond}},
		{"fdinfo-timerfd-abstime.txt", Timerfd{SettimeFlags: 3, Value: 3599*time.Second + 212219982}},
	} {
		f, err := ParseFdinfo(readSeed(t, tc.seed))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Timerfd()
		if err != nil {
			t.Errorf("%s: %v", tc.seed, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.seed, got, tc.want)
		}
	}
	// The largest time the kernel keeps, 2^63-1 ns.
	f := timerfdInfo("(9223372036, 854775807)")
	if got, err := f.Timerfd(); err != nil || got.Value != time.Duration(1<<63-1) {
		t.Errorf("largest time: %+v, %v", got, err)
	}
}

// timerfdInfo is a timerfd's fdinfo with it_value v.
func timerfdInfo(v string) Fdinfo {
	return Fdinfo{Extra: []KeyValue{
		{"clockid", "7"}, {"ticks", "18446744073709551615"}, {"settime flags", "01"},
		{"it_value", v}, {"it_interval", "(0, 0)"},
	}}
}

func TestTimerfdErrors(t *testing.T) {
	for _, v := range []string{
		"", "(1, 2", "1, 2)", "(1 2)", "(1,2)", "(-1, 2)", "(1, -2)", "(1, 1000000000)",
		"(9223372036, 854775808)", "(18446744073709551615, 0)", "(x, 0)",
	} {
		if got, err := timerfdInfo(v).Timerfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("it_value %q: %+v, %v; want ErrSyntax", v, got, err)
		}
	}
	full := timerfdInfo("(0, 0)").Extra
	for i := range full {
		missing := Fdinfo{Extra: append(append([]KeyValue{}, full[:i]...), full[i+1:]...)}
		if got, err := missing.Timerfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("without %s: %+v, %v; want ErrSyntax", full[i].Key, got, err)
		}
		bad := Fdinfo{Extra: append([]KeyValue{}, full...)}
		bad.Extra[i].Value = "9z"
		if got, err := bad.Timerfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s 9z: %+v, %v; want ErrSyntax", full[i].Key, got, err)
		}
	}
}

func FuzzTimerfd(f *testing.F) {
	for _, name := range timerfdSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseFdinfo(b)
		if checkFuzzErr(t, err) {
			return
		}
		tf, err := info.Timerfd()
		if !checkFuzzErr(t, err) && (tf.Value < 0 || tf.Interval < 0) {
			t.Fatalf("negative time: %+v", tf)
		}
	})
}
