package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestJSONWriter checks the writer against encoding/json: the same
// document, indented the same way, reads back as the same values.
func TestJSONWriter(t *testing.T) {
	names := []string{"plain", "", `quote " and \ back`, "ctl \x00\x01\x1f\x7f", "utf8 é €", "bad \xff\xfe end", "<html> & co"}
	var w jsonWriter
	w.open('{')
	w.key("Names")
	w.strs(names)
	w.key("Empty")
	w.open('[')
	w.close(']')
	w.key("Objects")
	w.open('[')
	for i, n := range names[:2] {
		w.open('{')
		w.key("N")
		w.uint(uint64(i) << 40)
		w.key("B")
		w.bool(i == 0)
		w.key("S")
		w.str(n)
		w.close('}')
	}
	w.close(']')
	w.close('}')

	type object struct {
		N uint64
		B bool
		S string
	}
	type doc struct {
		Names   []string
		Empty   []int
		Objects []object
	}
	var got doc
	if err := json.Unmarshal(w.b, &got); err != nil {
		t.Fatalf("%v in:\n%s", err, w.b)
	}
	want := doc{Names: names, Empty: []int{}, Objects: []object{{0, true, "plain"}, {1 << 40, false, ""}}}
	want.Names = append([]string(nil), names...)
	want.Names[5] = "bad \ufffd\ufffd end" // each byte that is not UTF-8
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	indented, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json escapes <, > and & for HTML; JSON does not need it.
	if g, w := string(w.b), strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(indented)); g != w {
		t.Errorf("layout differs:\n%s\nencoding/json:\n%s", g, w)
	}
}
