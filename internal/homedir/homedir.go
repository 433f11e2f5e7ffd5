// Package homedir expands a leading ~ in the paths people give routepush
// (identity and known_hosts files, ssh_config, a kubeconfig), as a shell
// or OpenSSH would. It is a leaf: it imports no other routepush package.
package homedir

import (
	"os"
	"path/filepath"
	"strings"
)

// Expand expands a leading ~/ (or a lone ~) to the user's home directory,
// the way a shell would. Any other path, ~user/ included, comes back as
// is, as does every path when the home directory is unknown.
func Expand(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
