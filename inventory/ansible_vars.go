package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// unsafeText is a string tagged !unsafe: Ansible takes it as written,
// never rendering the Jinja it may hold, and so does routepush.
type unsafeText string

// vaulted is a value encrypted with ansible-vault, which routepush cannot
// read: it has no vault password, and wants none.
type vaulted struct{}

// readVarsFor reads the variables of one group or host from group_vars/ or
// host_vars/ as Ansible's host_group_vars plugin finds them: the first of
// NAME, NAME.yml, NAME.yaml and NAME.json that exists; a folder's files
// (recursively, hidden files and backups~ left out, only those without an
// extension or with one of those) merged in name order.
func readVarsFor(dir, name, entity string) (vars, error) {
	// finish checked name already; this guards the path on its own.
	if err := safeEntityName(name); err != nil {
		return nil, err
	}
	// Only a file that is not there sets nothing: one routepush cannot
	// look at (permissions, a symlink loop) may set anything.
	if st, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) || err == nil && !st.IsDir() {
		return vars{}, nil
	} else if err != nil {
		return nil, err
	}
	var files []string
	for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
		p := filepath.Join(dir, name+ext)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("variables of %s: %w", entity, err)
		}
		if st.IsDir() {
			found, err := varsDir(p)
			if err != nil {
				return nil, err
			}
			files = found
		} else {
			files = []string{p}
		}
		break
	}
	out := vars{}
	for _, p := range files {
		m, err := readVarsFile(p, entity)
		if err != nil {
			return nil, err
		}
		rel := p
		if r, err := filepath.Rel(filepath.Dir(dir), p); err == nil {
			rel = r
		}
		for k, v := range m {
			out[k] = val{v, rel}
		}
	}
	return out, nil
}

// varsDir lists the files of a group's or host's folder. A folder it
// has been in already (a symlink to . or to a parent) is refused, as is a
// folder of more than maxVarsFiles files: either would keep routepush
// walking for as long as the paths get longer.
func varsDir(dir string) ([]string, error) {
	var out []string
	seen := map[[2]uint64]bool{}
	var walk func(dir string, st os.FileInfo) error
	walk = func(dir string, st os.FileInfo) error {
		if id, ok := fileID(st); ok {
			if seen[id] {
				return fmt.Errorf("%s: leads back to a folder already read (a symlink loop)", dir)
			}
			seen[id] = true
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		for _, n := range names {
			if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
				continue
			}
			p := filepath.Join(dir, n)
			ext := filepath.Ext(n)
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			switch {
			case st.IsDir() && ext == "":
				if err := walk(p, st); err != nil {
					return err
				}
			case ext == "" || ext == ".yml" || ext == ".yaml" || ext == ".json":
				// readVarsBytes refuses what is not a regular file.
				out = append(out, p)
			}
			if len(out) > maxVarsFiles {
				return fmt.Errorf("%s: more than %d files of variables", dir, maxVarsFiles)
			}
		}
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	return out, walk(dir, st)
}

// fileID is a file's device and inode.
func fileID(st os.FileInfo) ([2]uint64, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(sys.Dev), sys.Ino}, true
}

// readVarsFile reads one YAML (or JSON) file of variables. A file
// encrypted whole with ansible-vault is refused: what it sets, routepush
// cannot know.
func readVarsFile(path, entity string) (map[string]any, error) {
	data, err := readVarsBytes(path)
	if err != nil {
		return nil, fmt.Errorf("%s (variables of %s): %w", path, entity, err)
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "$ANSIBLE_VAULT;") {
		return nil, fmt.Errorf("%s (variables of %s) is encrypted with ansible-vault; routepush cannot read it and so cannot know what it sets: move what routepush reads (ansible_* connection settings, pod CIDRs, internal IPs) out of it, or keep the vault in a file no inventory group names", path, entity)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	d := newYAMLDecoder(path)
	root, err := d.resolve(doc.Content[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: variables must be a mapping", path)
	}
	v, err := d.value(root, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v.(map[string]any), nil
}

func asInt(v any) (int64, bool) {
	if u, ok := v.(unsafeText); ok {
		v = string(u)
	}
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), x == float64(int64(x))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}
