package proc

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readSeed reads a capture from testdata.
func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkFuzzErr fails unless a parse error wraps ErrSyntax, and reports
// whether there was one.
func checkFuzzErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrSyntax) {
		t.Fatalf("error does not wrap ErrSyntax: %v", err)
	}
	return err != nil
}

func TestParseNum(t *testing.T) {
	if v, err := parseNum[int32]("-2147483648", 10); err != nil || v != -1<<31 {
		t.Errorf("int32 min = %v, %v", v, err)
	}
	if v, err := parseNum[uint64]("ffffffffffffffff", 16); err != nil || v != ^uint64(0) {
		t.Errorf("uint64 max = %v, %v", v, err)
	}
	if v, err := parseNum[uint32]("0100002", 8); err != nil || v != 0o100002 {
		t.Errorf("octal = %v, %v", v, err)
	}
	for _, s := range []string{"", "-1", "4294967296", " 1", "0x1", "1 2"} {
		if v, err := parseNum[uint32](s, 10); !errors.Is(err, ErrSyntax) {
			t.Errorf("parseNum[uint32](%q) = %v, %v; want ErrSyntax", s, v, err)
		}
	}
	if v, err := parseNum[int32]("2147483648", 10); !errors.Is(err, ErrSyntax) {
		t.Errorf("int32 overflow = %v, %v; want ErrSyntax", v, err)
	}
}

func TestParseFields(t *testing.T) {
	var a, b int
	var other []KeyValue
	fields := func() []field {
		return []field{
			{key: "a", parse: num(&a, 10)},
			{key: "b", optional: true, parse: num(&b, 10)},
		}
	}
	keep := func(k, v string) { other = append(other, KeyValue{k, v}) }
	if err := parseFields([]byte("x:\t y \na:\t1\nb c: 2:3"), fields(), keep); err != nil {
		t.Fatal(err)
	}
	if a != 1 || b != 0 {
		t.Errorf("a, b = %d, %d; want 1, 0", a, b)
	}
	if d := cmp.Diff([]KeyValue{{"x", "y"}, {"b c", "2:3"}}, other); d != "" {
		t.Errorf("other (-want +got):\n%s", d)
	}
	for _, in := range []string{"", "b: 1\n", "a: 1\na: 2\n", "a: 1\nnocolon\n", "a: 1\n\n", "a: x\n"} {
		if err := parseFields([]byte(in), fields(), nil); !errors.Is(err, ErrSyntax) {
			t.Errorf("parseFields(%q) = %v; want ErrSyntax", in, err)
		}
	}
}
