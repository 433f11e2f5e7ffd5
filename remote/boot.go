package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
)

// bootIDPath is where Linux says which boot it is in: a random UUID made
// at each boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

var bootIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// BootID returns the node's boot id, "" where it has none, read over SFTP
// once per connection: a restart ends the connection. A watcher's kept
// connection reads it once in its life.
func (c *Client) BootID(ctx context.Context) (string, error) {
	if c.kept != nil && c.kept.bootKnown {
		return c.kept.bootID, nil
	}
	if c.bootKnown {
		return c.bootID, nil
	}
	var id string // set only once the operation has returned (see Runs)
	err := c.withFiles(ctx, "read "+bootIDPath, func(fsys sftpFS) error {
		f, err := fsys.Open(bootIDPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.name, bootIDPath, err)
		}
		defer f.Close()
		b := make([]byte, 64)
		n, err := f.ReadAt(b, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %s: %w", c.name, bootIDPath, err)
		}
		found := strings.TrimSuffix(string(b[:n]), "\n")
		if !bootIDRE.MatchString(found) {
			return fmt.Errorf("%s: %s reads %s, not a boot id", c.name, bootIDPath, safetext.Quote(found))
		}
		id = found
		return nil
	})
	if err != nil {
		return "", err
	}
	c.bootID, c.bootKnown = id, true
	if c.kept != nil {
		c.kept.bootID, c.kept.bootKnown = id, true
	}
	return id, nil
}
