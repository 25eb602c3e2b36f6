package crosskernel

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ResultsFrame tags the console frame in which a guest reports its results.
const ResultsFrame = "xk-results"

// doneEntry is the last entry of a guest's output tar: without it the tar
// was cut short.
const doneEntry = "DONE"

// RunJobs runs jobs in order. A job that needs an artifact an earlier job
// of the list failed to write is skipped, with the reason.
func RunJobs(ctx context.Context, r *Runner, jobs []Job) []Result {
	failed := map[string]string{} // artifact -> job that should have made it
	var results []Result
	for _, j := range jobs {
		if by, ok := failed[j.From]; ok && j.From != "" {
			res := Result{ID: j.ID, Kernel: r.Kernel, Release: r.Release, Skipped: true, BlockedBy: by,
				Err: fmt.Sprintf("%s on %s: not run: %s failed", j.ID, r.Kernel, by)}
			results = append(results, res)
			if j.Into != "" {
				failed[j.Into] = j.ID
			}
			continue
		}
		res := r.Run(ctx, j)
		if !res.OK && j.Into != "" {
			failed[j.Into] = j.ID
		}
		results = append(results, res)
	}
	return results
}

// WriteOutputs writes a guest's results and the artifacts it made as a tar.
func WriteOutputs(w io.Writer, root string, results []Result, artifacts []string) error {
	tw := tar.NewWriter(w)
	b, err := json.Marshal(results)
	if err != nil {
		return err
	}
	if err := tarFile(tw, "results.json", 0o644, b); err != nil {
		return err
	}
	for _, name := range artifacts {
		dir := ArtifactDir(root, name)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return tarFile(tw, filepath.ToSlash(rel), 0o644, data)
		})
		if err != nil {
			return fmt.Errorf("pack artifact %s: %w", name, err)
		}
	}
	if err := tarFile(tw, doneEntry, 0o644, nil); err != nil {
		return err
	}
	return tw.Close()
}

func tarFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	return nil
}

// ReadOutputs unpacks a guest's output tar: artifacts go under root, the
// results are returned. Only art/ entries are accepted.
func ReadOutputs(r io.Reader, root string) ([]Result, error) {
	tr := tar.NewReader(r)
	var results []Result
	seenResults := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("output tar ends without its DONE entry: the guest did not finish writing it")
		}
		if err != nil {
			return nil, fmt.Errorf("output tar: %w", err)
		}
		name := path.Clean(h.Name)
		switch {
		case name == doneEntry:
			if !seenResults {
				return nil, errors.New("output tar has no results.json")
			}
			return results, nil
		case name == "results.json":
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("output tar: %w", err)
			}
			if err := json.Unmarshal(b, &results); err != nil {
				return nil, fmt.Errorf("output tar: results.json: %w", err)
			}
			seenResults = true
		case strings.HasPrefix(name, artDir+"/") && !strings.Contains(name, "..") && h.Typeflag == tar.TypeReg:
			dst := filepath.Join(root, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("output tar: %s: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("output tar: unexpected entry %q", h.Name)
		}
	}
}
