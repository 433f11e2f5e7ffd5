package remote

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/pkg/sftp"
)

// Where a node keeps routepush's state: its lock and one record per run.
const (
	stateDir = "/var/lib/routepush"
	runsDir  = stateDir + "/runs"
	lockPath = stateDir + "/lock"
)

// stateDir checks one of routepush's directories on the node (by Lstat:
// its own metadata, not what it points to) before anything is read or
// written in it: a symbolic link, something not a directory, or a
// directory others may write to (where they could plant or swap files)
// is refused. A missing one is created when create is set (see
// madeMode), else accepted: there is nothing in it.
func (c *Client) stateDir(fsys sftpFS, dir string, create bool) error {
	fi, err := fsys.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		if mkErr := fsys.Mkdir(dir); mkErr != nil {
			// Another run may have made it between the two calls (sftp-server
			// says only "Failure" then): what is there now decides.
			if fi, err = fsys.Lstat(dir); err != nil {
				return fmt.Errorf("%s: mkdir %s: %w%s", c.name, dir, mkErr, failureHint(mkErr))
			}
		} else {
			if err := fsys.Chmod(dir, madeMode(dir)); err != nil {
				return fmt.Errorf("%s: chmod %s: %w", c.name, dir, err)
			}
			fi, err = fsys.Lstat(dir)
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil
	case err != nil:
		return fmt.Errorf("%s: %s: %w", c.name, dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: refusing %s: it is a symbolic link; routepush writes only to a real directory there (remove the link)", c.name, dir)
	case !fi.IsDir():
		return fmt.Errorf("%s: refusing %s: it is not a directory", c.name, dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s: refusing %s: it is writable by group or others (mode %04o); make it 0755 or 0700", c.name, dir, fi.Mode().Perm())
	case ownerOf(fi) > 0:
		// Its owner could swap the files in it for links between two
		// of routepush's calls, and root's sftp-server would follow.
		return fmt.Errorf("%s: refusing %s: it is owned by uid %d, not root; routepush writes as root only where only root can (chown root)", c.name, dir, ownerOf(fi))
	}
	return nil
}

// madeMode is the mode routepush makes a directory with: root's alone
// for its state, and readable for the routes file and its unit.
func madeMode(dir string) fs.FileMode {
	if dir == stateDir || strings.HasPrefix(dir, stateDir+"/") {
		return 0o700
	}
	return 0o755
}

// ownerOf is the uid that owns a file the SFTP server described, or -1
// when it did not say.
func ownerOf(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		return int64(st.UID)
	}
	return -1
}

// tempName is a temporary file's name beside name: random, so nobody can
// prepare it, and created with O_EXCL.
func tempName(name string) string {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return name + "." + hex.EncodeToString(nonce[:]) + ".routepush-tmp"
}
