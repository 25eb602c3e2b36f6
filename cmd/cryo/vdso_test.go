package main

import (
	"bytes"
	"encoding/json"
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

func TestVDSOCommand(t *testing.T) {
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
