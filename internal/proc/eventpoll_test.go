package proc

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEpollTargets(t *testing.T) {
	seed, err := ParseFdinfo(readSeed(t, "fdinfo-epoll.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   Fdinfo
		want []EpollTarget
	}{
		{"seed", seed, []EpollTarget{
			{Fd: 6, Events: 0x80000019, Data: 6, Ino: 0x40e, Sdev: 0x10},
			{Fd: 5, Events: 0x19, Data: 5, Ino: 0x40e, Sdev: 0x10},
		}},
		{"none", Fdinfo{Extra: []KeyValue{{"eventfd-count", "0"}}}, nil},
		{"64-bit data, other keys skipped", Fdinfo{Extra: []KeyValue{
			{"tfd", "1023 events: 4 data: ffffffffffffffff  pos:77 ino:1 sdev:fe00001 future:x"},
		}}, []EpollTarget{{Fd: 1023, Events: 4, Data: ^uint64(0), Pos: 77, Ino: 1, Sdev: 0xfe00001}}},
		{"no description", Fdinfo{Extra: []KeyValue{{"tfd", "3 events: 1 data: 2"}}},
			[]EpollTarget{{Fd: 3, Events: 1, Data: 2}}},
	} {
		got, err := tc.in.EpollTargets()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestEpollTargetsErrors(t *testing.T) {
	for _, v := range []string{
		"",
		"x events: 1 data: 2",
		"3 events: 1",
		"3 data: 2",
		"3 events: 1 data:",
		"3 events: 1 data: 2 pos",
		"3 events: 1 events: 1 data: 2",
		"3 events: 100000000 data: 2",
		"3 events: 1 data: 10000000000000000",
		"3 events: 1 data: 2 ino:zz",
	} {
		f := Fdinfo{Extra: []KeyValue{{"tfd", v}}}
		if got, err := f.EpollTargets(); !errors.Is(err, ErrSyntax) {
			t.Errorf("tfd %q: %+v, %v; want ErrSyntax", v, got, err)
		}
	}
}

func TestEventfd(t *testing.T) {
	seed, err := ParseFdinfo(readSeed(t, "fdinfo-eventfd.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   Fdinfo
		want Eventfd
	}{
		{"seed", seed, Eventfd{Count: 5, SemaphoreKnown: true}},
		{"hex, semaphore", Fdinfo{Extra: []KeyValue{{"eventfd-count", "fffffffffffffffe"}, {"eventfd-semaphore", "1"}}},
			Eventfd{Count: 0xfffffffffffffffe, Semaphore: true, SemaphoreKnown: true}},
		{"old kernel", Fdinfo{Extra: []KeyValue{{"eventfd-count", "10"}}}, Eventfd{Count: 16}},
	} {
		got, err := tc.in.Eventfd()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, extra := range [][]KeyValue{
		nil,
		{{"eventfd-count", "g"}},
		{{"eventfd-count", "1"}, {"eventfd-semaphore", "2"}},
	} {
		if got, err := (Fdinfo{Extra: extra}).Eventfd(); !errors.Is(err, ErrSyntax) {
			t.Errorf("%v: %+v, %v; want ErrSyntax", extra, got, err)
		}
	}
}
