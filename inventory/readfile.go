package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"unicode"
)

// Caps on what routepush reads from an inventory. It runs as the operator
// (often root) and reads files others may write: a group_vars file that
// is a FIFO, /dev/zero behind a symlink or a runaway file must end in an
// error, not a hang or an exhausted memory.
const (
	maxInventoryBytes = 16 << 20 // the --inventory file: 5,000 nodes take under 1 MiB
	maxVarsFileBytes  = 1 << 20  // one group_vars/ or host_vars/ file
	maxVarsFiles      = 1000     // files under one group's or host's folder
)

// readInventory reads the --inventory file, at most maxInventoryBytes.
// It may be a pipe (-i <(ansible-inventory ...)): the operator named it.
func readInventory(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return nil, st, errIsDir
	}
	data, err := readAtMost(f, maxInventoryBytes)
	return data, st, err
}

var errIsDir = errors.New("is a directory")

// readVarsBytes reads a group_vars/ or host_vars/ file, at most
// maxVarsFileBytes. Only a regular file (or a symlink to one) is read:
// it is opened without blocking, so a FIFO cannot hang the run before it
// is found not to be one, and checked on the open file, so it cannot be
// swapped in between.
func readVarsBytes(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer that may never come.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (%s); routepush reads variables only from files", st.Mode().Type())
	}
	return readAtMost(f, maxVarsFileBytes)
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("is larger than %d MiB, more than an inventory needs; refusing to read on", limit>>20)
	}
	return data, nil
}

// safeEntityName refuses a group or host name that would lead a
// group_vars/ or host_vars/ path elsewhere (../../etc/x, a/b) or carry
// control characters into messages and terminals. Ansible's own group
// names are letters, digits and _, and host names are DNS names or
// addresses.
func safeEntityName(name string) error {
	switch {
	case name == "" || name == "." || strings.Contains(name, ".."):
		return fmt.Errorf("%q is not a name routepush can look up in group_vars/ or host_vars/", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q contains a path separator, which would read variables from outside group_vars/ or host_vars/", name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }):
		return fmt.Errorf("%q contains control characters", name)
	}
	return nil
}

// printable escapes what a parser's message quotes from the file (a line,
// a key) so that control characters in an inventory never reach the
// operator's terminal as they are.
func printable(err error) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' {
			return unicode.ReplacementChar
		}
		return r
	}, err.Error())
}
