// Package nodepath checks a path that came from a node, an inventory or
// the command line before routepush puts it on a node's command line or
// in a file it writes there (the sftp-server become runs, the ip a boot
// unit names): absolute, made of a conservative set of bytes, no ".."
// and bounded. Anything else is refused, never quoted or escaped: a path
// that needs quoting is not one routepush will run.
package nodepath

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen bounds a path: no distribution's sftp-server or ip is anywhere
// near it.
const MaxLen = 256

// Check returns nil for a path routepush may run on a node: it starts with
// "/", holds only letters, digits and "/._+-", has no "." or ".."
// element and no empty one ("//"), does not end in "/", and is at most
// MaxLen bytes.
func Check(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxLen:
		return fmt.Errorf("path longer than %d bytes", MaxLen)
	case p[0] != '/':
		return errors.New("not an absolute path")
	case p == "/" || strings.HasSuffix(p, "/"):
		return errors.New("names a directory")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._+-", c) >= 0) {
			return fmt.Errorf("byte %q is not allowed (only letters, digits and /._+-)", c)
		}
	}
	for _, e := range strings.Split(p[1:], "/") {
		switch e {
		case "":
			return errors.New("empty path element (//)")
		case ".", "..":
			return fmt.Errorf("%q path element", e)
		}
		if e[0] == '-' {
			return errors.New("path element starting with -")
		}
	}
	return nil
}

// CheckProgram is Check for a program routepush runs as root: besides
// passing Check, the path must name the program it is meant to be (its
// last element is base: "sftp-server", "ip"). A path that passes Check
// may still name any program (/sbin/reboot, /usr/bin/curl): an
// inventory, a configuration or a node's own output would otherwise
// choose what sudo -n runs as root, and what the boot unit runs at every
// boot. A wrapper under another name is refused; it can be installed as
// .../sftp-server.
func CheckProgram(p, base string) error {
	if err := Check(p); err != nil {
		return err
	}
	if name := p[strings.LastIndexByte(p, '/')+1:]; name != base {
		return fmt.Errorf("names %q, not %s", name, base)
	}
	return nil
}
