package qemu

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUFlags(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     map[string]bool
	}{
		{"qemu 7.2", "Available CPUs:\nx86 max  Enables all features\n\nRecognized CPUID flags:\n  3dnow abm\n  sse4.1 avx512-fp16\n\nRecognized foo:\n  bar\n",
			map[string]bool{"3dnow": true, "abm": true, "sse4.1": true, "avx512-fp16": true}},
		{"at the end", "Recognized CPUID flags:\n  pku\n", map[string]bool{"pku": true}},
		{"none", "Available CPUs:\n", nil},
	} {
		if d := cmp.Diff(tt.want, ParseCPUFlags([]byte(tt.in))); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, d)
		}
	}
}
