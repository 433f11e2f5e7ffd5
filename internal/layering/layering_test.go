package layering

import (
	"go/build"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/routepush/routepush"

// rule is what the packages under one path of the module may import of
// the module's other packages.
type rule struct {
	path    string   // a package, or its subtree with "/..."
	imports []string // packages or "/..." subtrees; nil: none; "..." anything
	// pure packages import nothing of the standard library that reaches
	// files, processes or the network, and nor do the packages of the
	// module they import.
	pure bool
}

// rules are the layers of package doc, most specific first.
var rules = []rule{
	{path: "cmd/...", imports: []string{"cmd/...", "watch", "orchestrator", "inventory", "remote", "host", "route", "internal/..."}},
	{path: "watch", imports: []string{"orchestrator", "inventory", "host", "route", "internal/..."}},
	{path: "orchestrator", imports: []string{"inventory", "host", "route", "internal/..."}},
	{path: "inventory", imports: []string{"route", "internal/..."}},
	{path: "remote", imports: []string{"host", "route", "internal/..."}},
	{path: "host", imports: []string{"route", "internal/..."}, pure: true},
	{path: "route", imports: []string{"internal/..."}, pure: true},
	{path: "internal/...", imports: nil},
	{path: "test/...", imports: []string{"..."}},
	{path: "bench/...", imports: []string{"..."}},
}

// impure are standard packages a pure package must not import.
var impure = []string{"os", "os/exec", "io/fs", "io/ioutil", "path/filepath", "net", "syscall"}

func matches(pattern, rel string) bool {
	if pattern == "..." {
		return true
	}
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == tree || strings.HasPrefix(rel, tree+"/")
	}
	return rel == pattern
}

func ruleFor(rel string) (rule, bool) {
	for _, r := range rules {
		if matches(r.path, rel) {
			return r, true
		}
	}
	return rule{}, false
}

func allowed(r rule, rel, imp string) bool {
	return imp == rel || slices.ContainsFunc(r.imports, func(p string) bool { return matches(p, imp) })
}

// pkg is one package of the module, as go/build reads it (for this
// GOOS/GOARCH, without build tags).
type pkg struct {
	rel                  string // path within the module, "" for none
	imports, testImports []string
}

func modulePackages(t *testing.T) map[string]pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.HasPrefix(string(b), "module "+module+"\n") {
		t.Fatalf("%s is not the root of %s: %v", root, module, err)
	}
	pkgs := map[string]pkg{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		if path != root {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		bp, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		own := func(imports ...[]string) []string {
			var out []string
			for _, list := range imports {
				for _, imp := range list {
					if r, ok := strings.CutPrefix(imp, module+"/"); ok {
						out = append(out, r)
					} else if !strings.Contains(strings.Split(imp, "/")[0], ".") {
						out = append(out, "std:"+imp)
					}
				}
			}
			return out
		}
		pkgs[rel] = pkg{rel: rel, imports: own(bp.Imports), testImports: own(bp.TestImports, bp.XTestImports)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"route", "remote", "inventory", "orchestrator", "cmd/routepush/app"} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("package %s not found under %s", want, root)
		}
	}
	return pkgs
}

// TestImportRules checks every package's imports against the layers.
func TestImportRules(t *testing.T) {
	t.Parallel()
	pkgs := modulePackages(t)
	for rel, p := range pkgs {
		r, ok := ruleFor(rel)
		if !ok {
			t.Errorf("package %s is in no layer: add it to the rules (and package doc) of internal/layering", rel)
			continue
		}
		if r.pure {
			for dep, std := range impureDeps(pkgs, rel) {
				t.Errorf("package %s is pure but %s imports %s", rel, dep, std)
			}
		}
		for _, imp := range p.imports {
			if strings.HasPrefix(imp, "std:") {
				continue
			}
			if !allowed(r, rel, imp) {
				t.Errorf("package %s imports %s, which its layer may not (allowed: %v)", rel, imp, r.imports)
			}
		}
		for _, imp := range p.testImports {
			if strings.HasPrefix(imp, "std:") || matches("test/...", imp) {
				continue // tests may read files and use the test helpers
			}
			if !allowed(r, rel, imp) {
				t.Errorf("the tests of package %s import %s, which its layer may not (allowed: %v)", rel, imp, r.imports)
			}
		}
	}
}

// closure returns the module's packages top imports, directly or not,
// each with a package that imports it.
func closure(pkgs map[string]pkg, top string) map[string]string {
	seen := map[string]string{}
	queue := []string{top}
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		for _, imp := range pkgs[rel].imports {
			if _, ok := pkgs[imp]; !ok || seen[imp] != "" || imp == top {
				continue
			}
			seen[imp] = rel
			queue = append(queue, imp)
		}
	}
	return seen
}

// impureDeps returns, for rel and each package of the module it imports,
// an impure standard package it imports.
func impureDeps(pkgs map[string]pkg, rel string) map[string]string {
	out := map[string]string{}
	for _, dep := range append([]string{rel}, slices.Collect(maps.Keys(closure(pkgs, rel)))...) {
		for _, imp := range pkgs[dep].imports {
			if std, ok := strings.CutPrefix(imp, "std:"); ok && slices.Contains(impure, std) {
				out[dep] = std
			}
		}
	}
	return out
}

// TestInventoryDoesNotImportRemote checks the closure, not only direct
// imports: whatever imports inventory (or orchestrator) must not pull in
// SSH and SFTP.
func TestInventoryDoesNotImportRemote(t *testing.T) {
	t.Parallel()
	pkgs := modulePackages(t)
	for _, top := range []string{"inventory", "orchestrator"} {
		if by, ok := closure(pkgs, top)["remote"]; ok {
			t.Errorf("%s imports remote (through %s)", top, by)
		}
	}
}

// The rules must catch what they are there to catch.
func TestRulesRefuse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ from, imp string }{
		{"inventory", "remote"},
		{"orchestrator", "remote"},
		{"route", "inventory"},
		{"remote", "inventory"},
		{"remote", "orchestrator"},
		{"internal/proxyjump", "route"},
		{"orchestrator", "cmd/routepush/app"},
	} {
		r, ok := ruleFor(tt.from)
		if !ok || allowed(r, tt.from, tt.imp) {
			t.Errorf("%s may import %s", tt.from, tt.imp)
		}
	}
	for _, tt := range []struct{ from, imp string }{
		{"cmd/routepush/app", "remote"},
		{"orchestrator", "inventory"},
		{"inventory", "internal/proxyjump"},
		{"remote", "internal/persist"},
		{"route", "internal/safetext"},
		{"test/lab", "remote"},
	} {
		if r, ok := ruleFor(tt.from); !ok || !allowed(r, tt.from, tt.imp) {
			t.Errorf("%s may not import %s", tt.from, tt.imp)
		}
	}
	// route may import the leaves, but only pure ones.
	pkgs := map[string]pkg{
		"route":            {imports: []string{"std:fmt", "internal/homedir"}},
		"internal/homedir": {imports: []string{"std:os"}},
	}
	if got := impureDeps(pkgs, "route"); got["internal/homedir"] != "os" {
		t.Errorf("impureDeps = %v; want internal/homedir's os", got)
	}
}
