package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Modules a guest needs for a virtio disk: VirtioBlkModules must be there
// (as files or built in); VirtioBlkDeps are what it depends on, which Linux
// split and merged between versions (virtio_pci_legacy_dev appeared in
// 5.14) and some kernels build in. Listed dependencies first.
var (
	VirtioBlkModules = []string{"virtio_blk"}
	VirtioBlkDeps    = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci"}
)

// moduleSuffixes are the file names a module can have; compressed ones
// need a kernel with CONFIG_MODULE_DECOMPRESS to load them (LoadModule).
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// FindModules returns the files of the modules in want that the kernel
// package has, then those of need, leaving out what the kernel has built
// in. A module of need that is neither a file nor built in is an error.
func (k *Kernel) FindModules(need, want []string) ([]string, error) {
	if k.Modules == "" {
		return nil, fmt.Errorf("kernel %s: package %s has no modules directory", k.Release, k.Package)
	}
	builtin, err := moduleNames(filepath.Join(k.Modules, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	files := map[string]string{}
	tree := filepath.Join(k.Modules, "kernel")
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if p == tree && errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll // everything built in
		}
		if err != nil || d.IsDir() {
			return err
		}
		if name, ok := moduleName(d.Name()); ok {
			files[name] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	var out []string
	for _, n := range want {
		if f := files[strings.ReplaceAll(n, "-", "_")]; f != "" {
			out = append(out, f)
		}
	}
	for _, n := range need {
		n = strings.ReplaceAll(n, "-", "_")
		switch {
		case files[n] != "":
			out = append(out, files[n])
		case builtin[n]:
		default:
			return nil, fmt.Errorf("kernel %s: module %s is neither a file in %s nor built in", k.Release, n, k.Modules)
		}
	}
	return out, nil
}

// moduleName returns the module name of a module file name: dashes and
// underscores are the same to the kernel.
func moduleName(file string) (string, bool) {
	for _, s := range moduleSuffixes {
		if base, ok := strings.CutSuffix(file, s); ok {
			return strings.ReplaceAll(base, "-", "_"), true
		}
	}
	return "", false
}

// moduleNames reads a modules.builtin file (one kernel/.../NAME.ko path a
// line) into a set of module names.
func moduleNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, ok := moduleName(filepath.Base(strings.TrimSpace(sc.Text()))); ok {
			names[n] = true
		}
	}
	return names, sc.Err()
}

// LoadModules loads module files in order. A module whose dependencies are
// not loaded yet fails with ENOENT (unknown symbols); it is tried again
// after the others, so a list out of order still loads.
func LoadModules(paths []string) error {
	todo := paths
	for len(todo) > 0 {
		var again []string
		var errs []error
		for _, p := range todo {
			if err := LoadModule(p); errors.Is(err, unix.ENOENT) {
				again = append(again, p)
				errs = append(errs, err)
			} else if err != nil {
				return err
			}
		}
		if len(again) == len(todo) {
			return fmt.Errorf("modules with unresolved symbols: %w", errors.Join(errs...))
		}
		todo = again
	}
	return nil
}

// LoadModule loads a module file into the running kernel (guest side; the
// caller needs CAP_SYS_MODULE). A compressed module is handed to the kernel
// to decompress. A module already loaded is not an error.
func LoadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		// Not ENOENT as such: that means unresolved symbols to LoadModules.
		return fmt.Errorf("load module: %v", err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
