package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cryo-cr/cryo/internal/vdso"
)

func init() {
	commands["vdso"] = command{
		summary: "show a vDSO's layout and symbols, or the restore plan between two",
		run:     runVDSO,
	}
}

const vdsoHelp = `Without arguments, shows cryo's own vDSO: the [vvar], [vvar_vclock] and
[vdso] mappings and every exported function (name@version, offset, size).
SOURCE is a pid or a saved vDSO file: NAME.so with its NAME.maps beside it,
or a raw vDSO image alone (a kernel's vdso64.so, bytes read from
/proc/PID/mem), whose layout is then unknown: a plan with one compares the
functions and the image size, not the [vvar] pages, and says so.

'cryo vdso diff OLD NEW' prints what a restore of a process dumped with the
OLD vDSO does on a kernel with the NEW one: remap or proxy, and per function
its old and new offset and the trampoline a proxy writes.`

func runVDSO(args []string, stdout io.Writer) error {
	fs := newFlagSet("vdso", "[--pid PID | FILE] [--save FILE] [--json]\n       cryo vdso diff OLD NEW [--json]", vdsoHelp)
	pid := fs.Int("pid", 0, "show the vDSO of process `PID`")
	save := fs.String("save", "", "also save the vDSO as `FILE`.so and FILE.maps")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 && pos[0] == "diff" {
		if len(pos) != 3 {
			return usageErrorf(fs, "vdso diff takes two sources (pids or files), got %d", len(pos)-1)
		}
		old, err := loadSnapshot(pos[1])
		if err != nil {
			return err
		}
		rt, err := loadSnapshot(pos[2])
		if err != nil {
			return err
		}
		// A restore places the runtime block in the free hole nearest to
		// the old vDSO; just below the old block is where that usually is.
		oldStart, _ := old.Block()
		rtStart, rtEnd := rt.Block()
		rtVDSO := oldStart - (rtEnd - rtStart) + (rt.VDSOAddr() - rtStart)
		plan, err := vdso.NewPlan(old, rt, rtVDSO, false)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, planJSON(plan))
		}
		printPlan(stdout, plan)
		switch {
		case plan.Mode != vdso.ModeProxy || rt.Image == nil:
		case len(plan.LayoutUnknown) > 0:
			fmt.Fprintf(stdout, "\n(jumps assume the runtime vDSO just below the old one)\n")
		default:
			fmt.Fprintf(stdout, "\n(jumps assume the runtime vDSO at %#x, just below the old block, where a restore puts it when free)\n", rtVDSO)
		}
		return nil
	}

	source := "0"
	switch {
	case len(pos) > 1:
		return usageErrorf(fs, "vdso takes at most one source, got %d", len(pos))
	case len(pos) == 1 && *pid != 0:
		return usageErrorf(fs, "give --pid or a file, not both")
	case len(pos) == 1:
		source = pos[0]
	case *pid != 0:
		source = strconv.Itoa(*pid)
	}
	s, err := loadSnapshot(source)
	if err != nil {
		return err
	}
	if *save != "" {
		if err := s.Save(*save + ".so"); err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(stdout, snapshotJSON(s))
	}
	printSnapshot(stdout, s)
	return nil
}

// loadSnapshot reads a vDSO from a pid (0 is cryo itself) or a saved file.
func loadSnapshot(source string) (*vdso.Snapshot, error) {
	if pid, err := strconv.Atoi(source); err == nil {
		return vdso.ReadLive(pid)
	}
	return vdso.Load(source)
}

// snapshotJSON is s for scripts: its mappings, whether they are
// adjacent, and its symbols.
func snapshotJSON(s *vdso.Snapshot) []byte {
	var w jsonWriter
	w.open('{')
	w.key("Regions")
	w.open('[')
	for _, r := range s.Layout {
		w.open('{')
		w.key("Kind")
		w.str(r.Kind.String())
		w.key("Start")
		w.uint(r.Start)
		w.key("End")
		w.uint(r.End)
		w.key("Size")
		w.uint(r.Size())
		w.close('}')
	}
	w.close(']')
	w.key("Adjacent")
	w.bool(s.Layout.Adjacent() && !s.LayoutUnknown)
	if s.LayoutUnknown {
		w.key("LayoutUnknown")
		w.bool(true)
	}
	var symbols []vdso.Symbol
	if s.Image != nil {
		w.key("Machine")
		w.str(s.Image.Machine.String())
		w.key("Class")
		w.str(s.Image.Class.String())
		symbols = s.Image.Symbols
	}
	w.key("Symbols")
	w.open('[')
	for _, sym := range symbols {
		w.open('{')
		symbolFields(&w, sym)
		w.close('}')
	}
	w.close(']')
	w.close('}')
	return w.b
}

// planJSON is p for scripts: its mode, why, and each function's fate.
func planJSON(p *vdso.Plan) []byte {
	var w jsonWriter
	w.open('{')
	w.key("Mode")
	w.str(p.Mode.String())
	if len(p.Reasons) > 0 {
		w.key("Reasons")
		w.strs(p.Reasons)
	}
	if len(p.LayoutUnknown) > 0 {
		w.key("LayoutUnknown")
		w.strs(p.LayoutUnknown)
	}
	w.key("Entries")
	w.open('[')
	for _, e := range p.Entries {
		w.open('{')
		symbolFields(&w, e.Symbol)
		w.key("Target")
		w.open('{')
		symbolFields(&w, e.Target)
		w.close('}')
		if e.Missing {
			w.key("Missing")
			w.bool(true)
		}
		w.key("Kind")
		w.str(e.Kind.String())
		w.close('}')
	}
	w.close(']')
	w.close('}')
	return w.b
}

func symbolFields(w *jsonWriter, s vdso.Symbol) {
	w.key("Name")
	w.str(s.Name)
	w.key("Version")
	w.str(s.Version)
	w.key("Offset")
	w.uint(s.Offset)
	w.key("Size")
	w.uint(s.Size)
}

func printJSON(w io.Writer, b []byte) error {
	_, err := w.Write(append(b, '\n'))
	return err
}

func printSnapshot(w io.Writer, s *vdso.Snapshot) {
	if !s.LayoutUnknown {
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "MAPPING\tSTART\tEND\tSIZE")
		for _, r := range s.Layout {
			fmt.Fprintf(tw, "%s\t%#x\t%#x\t%d KiB\n", r.Kind, r.Start, r.End, r.Size()/1024)
		}
		tw.Flush()
	}
	switch {
	case s.LayoutUnknown:
		fmt.Fprintln(w, "layout unknown: a raw vDSO image, without the maps of a process")
	case len(s.Layout) == 0:
		fmt.Fprintln(w, "no [vvar], [vvar_vclock] or [vdso] mapped")
	case s.Layout.Adjacent():
		fmt.Fprintf(w, "adjacent, in the order %s\n", s.Layout.Order())
	default:
		fmt.Fprintf(w, "NOT adjacent (order %s)\n", s.Layout.Order())
	}
	if s.Image == nil {
		return
	}
	fmt.Fprintf(w, "\n%v %v vDSO, %d bytes, %d exported functions\n", s.Image.Machine, s.Image.Class, s.Image.Size, len(s.Image.Symbols))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tOFFSET\tSIZE")
	for _, sym := range s.Image.Symbols {
		fmt.Fprintf(tw, "%s\t%#x\t%d\n", sym, sym.Offset, sym.Size)
	}
	tw.Flush()
}

func printPlan(w io.Writer, p *vdso.Plan) {
	fmt.Fprintf(w, "plan: %s\n", p.Mode)
	for _, r := range p.Reasons {
		fmt.Fprintf(w, "  because %s\n", r)
	}
	if len(p.LayoutUnknown) > 0 {
		fmt.Fprintf(w, "  layout of the %s vDSO unknown (raw image): functions and image size compared, not the [vvar] pages\n", strings.Join(p.LayoutUnknown, " and "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tOLD\tNEW\tPATCH")
	for _, e := range p.Entries {
		target, patch := fmt.Sprintf("%#x", e.Target.Offset), e.Kind.String()
		if e.Missing {
			target, patch = "missing", map[bool]string{true: "syscall fallback", false: "-ENOSYS stub"}[e.Kind == vdso.TrampSyscall]
		}
		if p.Mode == vdso.ModeRemap {
			patch = "-"
		}
		fmt.Fprintf(tw, "%s\t%#x\t%s\t%s\n", e.Symbol, e.Offset, target, patch)
	}
	tw.Flush()
}
