package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSyscallNames checks that every system call the code names as
// unix.SYS_X has a name for messages.
func TestSyscallNames(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	sys := regexp.MustCompile(`unix\.SYS_([A-Z0-9_]+)`)
	err = filepath.WalkDir(strings.TrimSpace(string(root)), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		for _, m := range sys.FindAllStringSubmatch(string(b), -1) {
			used[strings.ToLower(m[1])] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, n := range sysNames {
		named[n] = true
	}
	for n := range used {
		if !named[n] {
			t.Errorf("unix.SYS_%s has no name in sysNames", strings.ToUpper(n))
		}
	}
}
