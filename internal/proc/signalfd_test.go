package proc

import (
	"errors"
	"testing"
)

// signalfdSeeds are captures of signalfds of this machine; the seeds of
// FuzzParseFdinfo hold them too.
var signalfdSeeds = []string{"fdinfo-signalfd.txt", "fdinfo-signalfd-rt.txt"}

func TestSignalfd(t *testing.T) {
	for _, tc := range []struct {
		seed string
		want uint64
	}{
		// SIGHUP and SIGUSR1.
		{"fdinfo-signalfd.txt", 1<<0 | 1<<9},
		// SIGUSR1 and SIGRTMAX (64); SIGKILL, asked for, is left out by
		// the kernel.
		{"fdinfo-signalfd-rt.txt", 1<<9 | 1<<63},
	} {
		f, err := ParseFdinfo(readSeed(t, tc.seed))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Signalfd(); err != nil || got != tc.want {
			t.Errorf("%s: %#x, %v; want %#x", tc.seed, got, err, tc.want)
		}
	}
	for _, extra := range [][]KeyValue{
		nil,
		{{"sigmask", ""}},
		{{"sigmask", "g"}},
		{{"sigmask", "10000000000000000"}},
	} {
		if got, err := (Fdinfo{Extra: extra}).Signalfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("%v: %#x, %v; want ErrSyntax", extra, got, err)
		}
	}
}

func FuzzSignalfd(f *testing.F) {
	for _, name := range signalfdSeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseFdinfo(b)
		if checkFuzzErr(t, err) {
			return
		}
		_, err = info.Signalfd()
		checkFuzzErr(t, err)
	})
}
