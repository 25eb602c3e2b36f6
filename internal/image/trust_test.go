package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestUntrusted checks that a restore reads no image that someone else
// than root or cryo's user could have written, nor anything but a regular
// file, and that a FIFO in place of an image does not block it.
func TestUntrusted(t *testing.T) {
	testutil.RequireRoot(t) // it gives files to another user
	const nobody = 65534
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, img string)
		// dirErr: the directory itself is refused.
		dirErr bool
	}{
		{"dir writable by all", func(t *testing.T, dir, img string) { chmod(t, dir, 0o777) }, true},
		{"dir writable by its group", func(t *testing.T, dir, img string) { chmod(t, dir, 0o770) }, true},
		{"dir of another user", func(t *testing.T, dir, img string) { chown(t, dir, nobody) }, true},
		{"image writable by all", func(t *testing.T, dir, img string) { chmod(t, img, 0o666) }, false},
		{"image of another user", func(t *testing.T, dir, img string) { chown(t, img, nobody) }, false},
		{"image is a symlink", func(t *testing.T, dir, img string) {
			other := filepath.Join(t.TempDir(), "other.img")
			if err := os.Rename(img, other); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, img); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"image is a FIFO", func(t *testing.T, dir, img string) {
			if err := os.Remove(img); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(img, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"image is a directory", func(t *testing.T, dir, img string) {
			if err := os.Remove(img); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(img, 0o700); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "images")
			d, err := image.Create(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.WriteImage(image.FS, 1, &pb.FsEntry{CwdId: 1, RootId: 1}); err != nil {
				t.Fatal(err)
			}
			// Trusted as written.
			od, err := image.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := od.ReadImage(image.FS, 1, &pb.FsEntry{}); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir, filepath.Join(dir, image.FS.FileName(1)))
			done := make(chan error, 1)
			go func() {
				od, err := image.Open(dir)
				if err == nil {
					if tc.dirErr {
						t.Error("Open: no error")
					}
					err = od.ReadImage(image.FS, 1, &pb.FsEntry{})
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, image.ErrUntrusted) {
					t.Errorf("got %v, want ErrUntrusted", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("blocked reading the image")
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// TestCreateTrusted checks that a dump only writes where a restore will
// read: an existing directory that others may write is made writable by
// its owner alone (and given its mode back when the dump fails), and one
// of another user is refused.
func TestCreateTrusted(t *testing.T) {
	testutil.RequireRoot(t)
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, open, 0o777)
	d, err := image.Create(open)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(open); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v after Create, want 0755", st.Mode().Perm())
	}
	if _, err := image.Open(open); err != nil {
		t.Errorf("a restore refuses what the dump wrote into: %v", err)
	}
	if err := d.Discard(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(open); st.Mode().Perm() != 0o777 {
		t.Errorf("mode %v after Discard, want 0777 back", st.Mode().Perm())
	}
	theirs := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	chown(t, theirs, 65534)
	if _, err := image.Create(theirs); !errors.Is(err, image.ErrUntrusted) {
		t.Errorf("Create in another user's directory: %v, want ErrUntrusted", err)
	}
}
