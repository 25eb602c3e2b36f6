package proc

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInotifyWatches(t *testing.T) {
	seed, err := ParseFdinfo(readSeed(t, "fdinfo-inotify-watches.txt"))
	if err != nil {
		t.Fatal(err)
	}
	h := func(typ int32, b ...byte) *FileHandle { return &FileHandle{Type: typ, Bytes: b} }
	for _, tc := range []struct {
		name string
		in   Fdinfo
		want []InotifyWatch
	}{
		// /dev/null, /proc/self/status, a file with IN_ONESHOT and
		// IN_EXCL_UNLINK, /tmp; wd 2 was removed.
		{"seed", seed, []InotifyWatch{
			{Wd: 5, Ino: 3, Sdev: 6, Mask: 0x20, Handle: h(1, 0xf5, 0x94, 0x01, 0x8e, 3, 0, 0, 0, 0, 0, 0, 0)},
			{Wd: 4, Ino: 0x1d0ce8, Sdev: 0x14, Mask: 2, Handle: h(0x81, 0xe8, 0x0c, 0x1d, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
			{Wd: 3, Ino: 0x9905fd, Sdev: 0xfe00000, Mask: 0x84000002, Handle: h(1, 0xfd, 0x05, 0x99, 0, 0xbd, 0xc2, 0x7f, 0x8b)},
			{Wd: 1, Ino: 0x3c4a3, Sdev: 0xfe00000, Mask: 0x300, Handle: h(1, 0xa3, 0xc4, 3, 0, 0, 0, 0, 0)},
		}},
		{"no handle", Fdinfo{Extra: []KeyValue{{"inotify wd", "a ino:1 sdev:2 mask:3 ignored_mask:0"}}},
			[]InotifyWatch{{Wd: 10, Ino: 1, Sdev: 2, Mask: 3}}},
		{"none", Fdinfo{Extra: []KeyValue{{"eventfd-count", "0"}}}, nil},
	} {
		got, err := tc.in.InotifyWatches()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	for _, v := range []string{
		"",
		"1",
		"1 ino:1 sdev:2 mask:3",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 future:1",
		"1 ino:1 ino:1 sdev:2 mask:3 ignored_mask:0",
		"g ino:1 sdev:2 mask:3 ignored_mask:0",
		"80000000 ino:1 sdev:2 mask:3 ignored_mask:0",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 fhandle-bytes:2 fhandle-type:1 f_handle:ab",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:zz",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 fhandle-bytes:1 fhandle-type:1",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 f_handle:ab",
		"1 ino:1 sdev:2 mask:3 ignored_mask:0 fhandle-bytes:1 f_handle:ab",
	} {
		f := Fdinfo{Extra: []KeyValue{{"inotify wd", v}}}
		if got, err := f.InotifyWatches(); !errors.Is(err, ErrSyntax) {
			t.Errorf("inotify wd:%s: %+v, %v; want ErrSyntax", v, got, err)
		}
	}
}

func TestFanotify(t *testing.T) {
	seed, err := ParseFdinfo(readSeed(t, "fdinfo-fanotify.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := seed.Fanotify()
	if err != nil {
		t.Fatal(err)
	}
	// FAN_CLASS_NOTIF|FAN_CLOEXEC|FAN_NONBLOCK|FAN_UNLIMITED_QUEUE,
	// O_LARGEFILE; an ignore mark (FAN_MARK_IGNORE_SURV) on a directory,
	// a filesystem mark on /dev, a mount mark on / with an ignored mask,
	// an inode mark.
	want := Fanotify{Flags: 0x13, EventFlags: 0x8000, Marks: []FanotifyMark{
		{Kind: FanotifyInode, Ino: 0x9905fc, Sdev: 0xfe00000, Mflags: 0x440, IgnoredMask: 8,
			Handle: &FileHandle{Type: 1, Bytes: []byte{0xfc, 0x05, 0x99, 0, 0x90, 0xa1, 0x3f, 0x7c}}},
		{Kind: FanotifyFilesystem, Sdev: 6, Mask: 0x20},
		{Kind: FanotifyMount, MntID: 0x1a, Mflags: 0x40, Mask: 0x40000038, IgnoredMask: 3},
		{Kind: FanotifyInode, Ino: 0x9905fd, Sdev: 0xfe00000, Mask: 0x22,
			Handle: &FileHandle{Type: 1, Bytes: []byte{0xfd, 0x05, 0x99, 0, 0xbd, 0xc2, 0x7f, 0x8b}}},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// A mark of a newer kernel is kept by its kind, for the caller to
	// name.
	f := Fdinfo{Extra: []KeyValue{{"fanotify flags", "0 event-flags:0"}, {"fanotify mnt_ns", "5 mflags:0 mask:1 ignored_mask:0"}}}
	if got, err := f.Fanotify(); err != nil || len(got.Marks) != 1 || got.Marks[0].Kind != "mnt_ns" {
		t.Errorf("mnt_ns mark: %+v, %v", got, err)
	}
	for _, extra := range [][]KeyValue{
		nil,
		{{"fanotify ino", "1 sdev:2 mflags:0 mask:1 ignored_mask:0"}},
		{{"fanotify flags", "0"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify flags", "0 event-flags:0"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify ino", "1 sdev:2 mflags:0 mask:1"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify ino", "1 sdev:2 mflags:0 mask:1 ignored_mask:0 x:1"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify mnt_id", "zz mflags:0 mask:1 ignored_mask:0"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify sdev", "1 mflags:0 mask:100000000 ignored_mask:0"}},
		{{"fanotify flags", "0 event-flags:0"}, {"fanotify ino", "1 sdev:2 mflags:0 mask:1 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:abcd"}},
	} {
		if got, err := (Fdinfo{Extra: extra}).Fanotify(); !errors.Is(err, ErrSyntax) {
			t.Errorf("%v: %+v, %v; want ErrSyntax", extra, got, err)
		}
	}
}

// fsnotifySeeds are the fdinfo captures the fuzz targets start from.
var fsnotifySeeds = []string{"fdinfo-inotify.txt", "fdinfo-inotify-watches.txt", "fdinfo-fanotify.txt"}

func FuzzInotifyWatches(f *testing.F) {
	for _, name := range fsnotifySeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if info, err := ParseFdinfo(b); err == nil {
			_, err = info.InotifyWatches()
			checkFuzzErr(t, err)
		}
	})
}

func FuzzFanotify(f *testing.F) {
	for _, name := range fsnotifySeeds {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if info, err := ParseFdinfo(b); err == nil {
			_, err = info.Fanotify()
			checkFuzzErr(t, err)
		}
	})
}
