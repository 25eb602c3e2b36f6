package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCryo runs a cryo command line in-process.
func runCryo(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return out.String(), errb.String(), code
}

const fixtures = "../../internal/vdso/testdata/"

// rawFixture copies a fixture's vDSO alone, without its .maps.
func rawFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(fixtures + name + ".so")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".so")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVDSOCommand(t *testing.T) {
	raw618, raw61 := rawFixture(t, "linux-6.18-amd64"), rawFixture(t, "linux-6.1-amd64")
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout, or of stderr when code != 0
	}{
		{"self", []string{"vdso"}, 0, []string{"[vdso]", "__vdso_clock_gettime@LINUX_2.6", "adjacent"}},
		{"file", []string{"vdso", fixtures + "linux-6.1-amd64.so"}, 0, []string{"[vvar]", "16 KiB", "__vdso_clock_gettime@LINUX_2.6  0x960", "__vdso_sgx_enter_enclave"}},
		{"diff same", []string{"vdso", "diff", fixtures + "linux-6.18-amd64.so", fixtures + "linux-6.18-amd64.so"}, 0, []string{"plan: remap"}},
		{"diff 6.18 to 6.1", []string{"vdso", "diff", fixtures + "linux-6.18-amd64.so", fixtures + "linux-6.1-amd64.so"}, 0,
			[]string{"plan: proxy", "__vdso_getrandom@LINUX_2.6      0xf40  missing  syscall fallback", "clock_gettime@LINUX_2.6         0xaf0  0x960    jmp-rel32"}},
		{"diff 6.1 to 6.18", []string{"vdso", "diff", fixtures + "linux-6.1-amd64.so", fixtures + "linux-6.18-amd64.so"}, 0,
			[]string{"plan: proxy", "__vdso_sgx_enter_enclave@LINUX_2.6  0xc50  missing -ENOSYS stub"}},
		{"raw file", []string{"vdso", raw61}, 0, []string{"layout unknown: a raw vDSO image", "__vdso_clock_gettime@LINUX_2.6  0x960"}},
		{"diff raw same", []string{"vdso", "diff", raw618, fixtures + "linux-6.18-amd64.so"}, 0,
			[]string{"plan: remap", "layout of the dumped vDSO unknown (raw image)", "clock_gettime@LINUX_2.6 0xaf0 0xaf0 -"}},
		{"diff raw 6.18 to raw 6.1", []string{"vdso", "diff", raw618, raw61}, 0,
			[]string{"plan: proxy", "layout of the dumped and runtime vDSO unknown", "clock_gettime@LINUX_2.6 0xaf0 0x960 jmp-rel32", "just below the old one"}},
		{"diff needs two", []string{"vdso", "diff", fixtures + "linux-6.1-amd64.so"}, 2, nil},
		{"missing file", []string{"vdso", "/nonexistent.so"}, 1, []string{"load vDSO: open /nonexistent.so: no such file"}},
		{"dead pid", []string{"vdso", "--pid", "999999"}, 1, []string{"read vDSO layout of pid 999999"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCryo(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			text := out
			if code != 0 {
				text = errOut
			}
			// Compare with runs of spaces collapsed: column widths
			// depend on the longest name.
			flat := strings.Join(strings.Fields(text), " ")
			for _, w := range tt.want {
				if !strings.Contains(flat, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestVDSOCommandJSONRaw(t *testing.T) {
	out, errOut, code := runCryo(t, "vdso", "diff", "--json", fixtures+"linux-6.18-amd64.so", rawFixture(t, "linux-5.10-amd64"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Mode          string
		LayoutUnknown []string
		Entries       []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	if plan.Mode != "proxy" || len(plan.Entries) != 12 || len(plan.LayoutUnknown) != 1 || plan.LayoutUnknown[0] != "runtime" {
		t.Fatalf("mode %q with %d entries, layout unknown for %v; want proxy, 12, runtime", plan.Mode, len(plan.Entries), plan.LayoutUnknown)
	}
	out, errOut, code = runCryo(t, "vdso", "--json", rawFixture(t, "linux-5.10-amd64"))
	var snap struct {
		LayoutUnknown bool
		Regions       []any
		Symbols       []any
	}
	if err := json.Unmarshal([]byte(out), &snap); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	if !snap.LayoutUnknown || len(snap.Regions) != 0 || len(snap.Symbols) == 0 {
		t.Errorf("raw snapshot %s", out)
	}
}

func TestVDSOCommandJSON(t *testing.T) {
	out, errOut, code := runCryo(t, "vdso", "diff", "--json", fixtures+"linux-6.18-amd64.so", fixtures+"linux-5.10-amd64.so")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Mode    string
		Entries []struct {
			Name    string
			Offset  uint64
			Missing bool
			Kind    string
		}
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	if plan.Mode != "proxy" || len(plan.Entries) != 12 {
		t.Fatalf("mode %q with %d entries, want proxy with 12", plan.Mode, len(plan.Entries))
	}
	for _, e := range plan.Entries {
		if strings.HasSuffix(e.Name, "getrandom") != e.Missing {
			t.Errorf("%s: missing=%v", e.Name, e.Missing)
		}
	}
}
