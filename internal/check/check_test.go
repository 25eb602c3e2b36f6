package check

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/testutil"
)

func TestMain(m *testing.M) {
	MaybeRunChild()
	os.Exit(testutil.Run(m))
}

func TestRun(t *testing.T) {
	testutil.RequireRoot(t)
	var out bytes.Buffer
	ok := Run(&out)
	t.Logf("output:\n%s", &out)
	if !ok {
		t.Fatal("Run reported missing features")
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(probes)+1 || lines[len(lines)-1] != "Looks good." {
		t.Fatalf("want a line per probe, then Looks good.")
	}
	for i, p := range probes {
		if !strings.HasPrefix(lines[i], p.name+" ") || !strings.HasSuffix(lines[i], " ok") {
			t.Errorf("line %d is %q, want %s ... ok", i+1, lines[i], p.name)
		}
	}
}

func TestTimeout(t *testing.T) {
	var out bytes.Buffer
	if runProbes(&out, probes[:1], time.Millisecond) {
		t.Fatalf("a probe given 1ms succeeded:\n%s", &out)
	}
	if !strings.Contains(out.String(), "FAILED: timed out after 1ms") {
		t.Errorf("output does not report the timeout:\n%s", &out)
	}
}

func TestReport(t *testing.T) {
	ps := []probe{
		{name: "short", need: "to do a"},
		{name: "a rather longer feature name", need: "to do b"},
	}
	for _, tc := range []struct {
		name string
		errs []error
		want string
	}{
		{"all ok", []error{nil, nil}, `short ................................. ok
a rather longer feature name .......... ok
Looks good.
`},
		{"one failed", []error{nil, errors.New("operation not permitted")}, `short ................................. ok
a rather longer feature name .......... FAILED: operation not permitted

1 of 2 checks failed. cryo needs:
  a rather longer feature name to do b
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var failed []probe
			for i, p := range ps {
				printResult(&out, p.name, tc.errs[i])
				if tc.errs[i] != nil {
					failed = append(failed, p)
				}
			}
			printVerdict(&out, failed, len(ps))
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("report differs (-want +got):\n%s", diff)
			}
		})
	}
}
