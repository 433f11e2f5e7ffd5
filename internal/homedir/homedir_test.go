package homedir

import (
	"path/filepath"
	"testing"
)

func TestExpand(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for in, want := range map[string]string{
		"~":                   home,
		"~/":                  home,
		"~/.ssh/known_hosts":  filepath.Join(home, ".ssh/known_hosts"),
		"/etc/ssh/ssh_config": "/etc/ssh/ssh_config",
		"relative/~/path":     "relative/~/path",
		"~other/.ssh/config":  "~other/.ssh/config",
		"":                    "",
	} {
		if got := Expand(in); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}
