package proc

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pidfdSeeds are captures of pidfds of this machine: of a live process,
// and of one reaped since (with PIDFD_NONBLOCK); the seeds of
// FuzzParseFdinfo hold them too.
var pidfdSeeds = []string{"fdinfo-pidfd.txt", "fdinfo-pidfd-reaped.txt"}

func TestPidfd(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Fdinfo
		want Pidfd
	}{
		{"fdinfo-pidfd.txt", Fdinfo{}, Pidfd{Pid: 12930, NSpid: []int{12930}}},
		{"fdinfo-pidfd-reaped.txt", Fdinfo{}, Pidfd{Pid: -1, NSpid: []int{-1}}},
		{"nested namespace", Fdinfo{Extra: []KeyValue{{"Pid", "300"}, {"NSpid", "300\t5"}}}, Pidfd{Pid: 300, NSpid: []int{300, 5}}},
		{"outside the namespace", Fdinfo{Extra: []KeyValue{{"Pid", "0"}, {"NSpid", "0"}}}, Pidfd{NSpid: []int{0}}},
		{"no NSpid line", Fdinfo{Extra: []KeyValue{{"Pid", "7"}}}, Pidfd{Pid: 7}},
	} {
		if strings.HasSuffix(tc.name, ".txt") {
			var err error
			if tc.in, err = ParseFdinfo(readSeed(t, tc.name)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := tc.in.Pidfd()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, d)
		}
	}
	for _, extra := range [][]KeyValue{
		nil,
		{{"NSpid", "5"}},
		{{"Pid", ""}},
		{{"Pid", "x"}},
		{{"Pid", "-2"}},
		{{"Pid", "5"}, {"NSpid", ""}},
		{{"Pid", "5"}, {"NSpid", "6"}},
		{{"Pid", "5"}, {"NSpid", "5 y"}},
	} {
		if got, err := (Fdinfo{Extra: extra}).Pidfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("%v: %+v, %v; want ErrSyntax", extra, got, err)
		}
	}
}

func FuzzPidfd(f *testing.F) {
	for _, name := range pidfdSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseFdinfo(b)
		if checkFuzzErr(t, err) {
			return
		}
		_, err = info.Pidfd()
		checkFuzzErr(t, err)
	})
}
