package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/pkg/sftp"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/routepush/routepush/internal/persist"
)

// Where --persist keeps a node's routes for the next boot: the routes file
// in `ip -batch` form, and a systemd unit that replays it.
const (
	routesPath = "/etc/routepush/routes"
	// The routes file a write replaced, for UndoPersisted.
	previousPath = routesPath + ".previous"
	unitName     = "routepush-routes.service"
	unitPath     = "/etc/systemd/system/" + unitName
	// What `systemctl enable` creates for WantedBy=multi-user.target.
	wantsPath = "/etc/systemd/system/multi-user.target.wants/" + unitName
	// sd_booted(3): the node runs systemd.
	systemdRunDir = "/run/systemd/system"
	// systemd-networkd writes its state here while it runs.
	networkdState = "/run/systemd/netif/state"
)

// defaultBootIP is the ip the boot unit runs where /sbin/ip is iproute2's:
// Debian, Ubuntu, and (through /sbin -> /usr/sbin) the Red Hat family and
// Arch. Units routepush wrote before it looked say it too.
const defaultBootIP = "/sbin/ip"

// bootUnit replays the routes file once the network is up, with the ip at
// ipPath: an absolute path (nodepath.Check), not a bare `ip`. systemd
// searches a bare name only from version 239 on (RHEL 7, Ubuntu 18.04 and
// Debian 9 refuse the unit), and its search path starts with
// /usr/local/sbin, where a BusyBox ip that cannot run -batch may sit
// before iproute2's. So the unit names the ip discovery found to be
// iproute2's on that node (bootIP in discover.go): /sbin/ip wherever that
// is iproute2's, else the first iproute2 ip on the session's PATH.
// -force goes on past a line that fails, such as a next hop whose link is
// not up yet, and `route replace` adds what is missing and leaves what is
// there.
func bootUnit(ipPath string) []byte {
	return []byte(`# Written by routepush --persist: replays the routes routepush pushed to
# this node, from ` + routesPath + `. routepush rewrites both files.
[Unit]
Description=routepush: routes to the other nodes' pod CIDRs
Wants=network-online.target
After=network-online.target
ConditionPathExists=` + routesPath + `

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + ipPath + ` -force -batch ` + routesPath + `

[Install]
WantedBy=multi-user.target
`)
}

// bootIP is the ip the node's boot unit runs (bootUnit), found once per
// node (discover.go): one session on the node, only with --persist, on
// every node, /sbin/ip-is-iproute2's Debian included: nothing cheaper
// tells iproute2's /sbin/ip from BusyBox's (a link to busybox, or a copy
// of it), and a unit naming BusyBox's would replay nothing at boot.
func (c *Client) bootIP(ctx context.Context) (string, error) {
	if c.boot != "" {
		return c.boot, nil
	}
	_, p, err := c.lookFor(ctx, func(d discovered) (string, error) { return d.bootIP(c.name) }, func(string) bool { return false })
	if err != nil {
		return "", err
	}
	c.boot = p
	return p, nil
}

// ReadPersisted reads what the node would restore at boot: the routes file,
// the unit and whether it is enabled, whether systemd runs, and whether
// systemd-networkd would delete routepush's routes.
func (c *Client) ReadPersisted(ctx context.Context) (persist.State, error) {
	// What the operation finds is used only once it has returned (see
	// Runs): it fills its own p.
	var found persist.State
	ip, err := c.bootIP(ctx)
	if err != nil {
		return persist.State{Path: routesPath}, err
	}
	err = c.withFiles(ctx, "read "+routesPath, func(fsys sftpFS) error {
		p := persist.State{Path: routesPath}
		if err := c.stateDir(fsys, path.Dir(routesPath), false); err != nil {
			return err
		}
		b, err := c.readFile(fsys, routesPath, c.routesFileLimit(), "a routes file of "+countString(c.planned)+" planned routes")
		switch {
		case err == nil:
			p.Exists, p.Routes = true, b
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s: read %s: %w", c.name, routesPath, err)
		}
		unit, err := c.readFile(fsys, unitPath, smallFileLimit, "")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: read %s: %w", c.name, unitPath, err)
		}
		p.UnitCurrent = bytes.Equal(unit, bootUnit(ip))
		p.UnitEnabled = exists(fsys, wantsPath)
		p.Systemd = isDir(fsys, systemdRunDir)
		if exists(fsys, networkdState) {
			p.ForeignRoutesManaged = c.networkdManagesForeignRoutes(fsys)
		}
		found = p
		return nil
	})
	if err != nil {
		return persist.State{Path: routesPath}, err
	}
	return found, nil
}

// WritePersisted writes the routes file atomically (and the unit, if it is
// not as routepush writes it), then enables the unit where systemd runs.
// The file it replaces stays as routes.previous (a hard link, so the routes
// file itself is never missing), which UndoPersisted puts back. found is
// what ReadPersisted saw on this node, which the run has held locked since.
func (c *Client) WritePersisted(ctx context.Context, routes []byte, found persist.State) error {
	ip := defaultBootIP
	if !found.UnitCurrent {
		var err error
		if ip, err = c.bootIP(ctx); err != nil {
			return err
		}
	}
	err := c.withFiles(ctx, "write "+routesPath, func(fsys sftpFS) error {
		if err := fsys.MkdirAll(path.Dir(unitPath)); err != nil {
			return fmt.Errorf("%s: mkdir %s: %w", c.name, path.Dir(unitPath), err)
		}
		if err := c.stateDir(fsys, path.Dir(routesPath), true); err != nil {
			return err
		}
		if found.Exists {
			if err := fsys.Remove(previousPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: remove %s: %w", c.name, previousPath, err)
			}
			if err := fsys.Link(routesPath, previousPath); err != nil {
				return fmt.Errorf("%s: keep %s as %s: %w", c.name, routesPath, previousPath, err)
			}
		}
		if err := c.writeAtomic(fsys, routesPath, routes, 0o644, true); err != nil {
			return err
		}
		if !found.UnitCurrent {
			return c.writeAtomic(fsys, unitPath, bootUnit(ip), 0o644, true)
		}
		return nil
	})
	if err != nil || !found.Systemd {
		return err // without systemd: the report says how to replay the file
	}
	if !found.UnitCurrent || !found.UnitEnabled {
		// enable also reloads systemd, which then sees a changed unit.
		cmd := "systemctl enable " + unitName
		if c.sudo {
			cmd = "sudo -n " + cmd
		}
		if _, _, err := c.run(ctx, cmd, cmd, nil, smallFileLimit, "systemctl's output"); err != nil {
			return err
		}
	}
	return nil
}

// UndoPersisted puts back the routes file the last WritePersisted replaced
// (routes.previous), or removes the routes file if there was none.
func (c *Client) UndoPersisted(ctx context.Context, found persist.State) error {
	return c.withFiles(ctx, "restore "+routesPath, func(fsys sftpFS) error {
		if found.Exists {
			if err := fsys.PosixRename(previousPath, routesPath); err != nil {
				return fmt.Errorf("%s: put %s back as %s: %w", c.name, previousPath, routesPath, err)
			}
			return nil
		}
		if err := fsys.Remove(routesPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: remove %s: %w", c.name, routesPath, err)
		}
		return nil
	})
}

// RestorePersisted puts the routes file back as a run record found it. The unit
// stays: without the file it does nothing (ConditionPathExists).
func (c *Client) RestorePersisted(ctx context.Context, prev persist.State) error {
	return c.withFiles(ctx, "restore "+routesPath, func(fsys sftpFS) error {
		if err := c.stateDir(fsys, path.Dir(routesPath), prev.Exists); err != nil {
			return err
		}
		if prev.Exists {
			return c.writeAtomic(fsys, routesPath, prev.Routes, 0o644, true)
		}
		if err := fsys.Remove(routesPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: remove %s: %w", c.name, routesPath, err)
		}
		return nil
	})
}

// writeAtomic replaces a file so that readers see either the old content
// or the new: a temporary file beside it (a random name, created
// exclusively, given perm before its first byte), rename. When durable,
// the file is synced before the rename, so a crash of the node too
// leaves either.
func (c *Client) writeAtomic(fsys sftpFS, name string, data []byte, perm os.FileMode, durable bool) error {
	tmp, f, err := c.writeTemp(fsys, name, data, perm, durable)
	if err == nil {
		if err = f.Close(); err == nil {
			err = fsys.PosixRename(tmp, name)
		}
		if err != nil {
			_ = fsys.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: write %s: %w%s", c.name, name, err, failureHint(err))
	}
	return nil
}

// writeAtomicOpen is writeAtomic leaving the file open, at its end, for
// more to be written to it (the states of a run, after its record): a
// request fewer to open it then and one fewer to close it now.
func (c *Client) writeAtomicOpen(fsys sftpFS, name string, data []byte, perm os.FileMode, durable bool) (*sftp.File, error) {
	tmp, f, err := c.writeTemp(fsys, name, data, perm, durable)
	if err == nil {
		if err = fsys.PosixRename(tmp, name); err != nil {
			_ = f.Close()
			_ = fsys.Remove(tmp)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: write %s: %w%s", c.name, name, err, failureHint(err))
	}
	return f, nil
}

// writeTemp writes data to a new temporary file beside name, given perm
// before its first byte, synced when durable, and returns it open for
// appending (what more is written goes after what is there: another run
// may have appended to it by name meanwhile). On an error it is gone.
func (c *Client) writeTemp(fsys sftpFS, name string, data []byte, perm os.FileMode, durable bool) (string, *sftp.File, error) {
	tmp := tempName(name)
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", nil, err
	}
	if err = f.Chmod(perm); err == nil {
		if _, err = f.Write(data); err == nil && durable {
			err = syncFile(f)
		}
	}
	if err != nil {
		_ = f.Close()
		_ = fsys.Remove(tmp)
		return "", nil, err
	}
	return tmp, f, nil
}

// networkd's configuration: the main file, then drop-ins in file-name
// order, a drop-in in an earlier directory hiding one of the same name in
// a later one (systemd.syntax(7)).
var (
	networkdConf    = []string{"/etc/systemd/networkd.conf", "/usr/lib/systemd/networkd.conf"}
	networkdDropIns = []string{"/etc/systemd/networkd.conf.d", "/run/systemd/networkd.conf.d", "/usr/local/lib/systemd/networkd.conf.d", "/usr/lib/systemd/networkd.conf.d"}
)

// networkdManagesForeignRoutes reads networkd's configuration the way
// networkd does and returns ManageForeignRoutes (on unless set off). An
// unreadable configuration counts as the default.
func (c *Client) networkdManagesForeignRoutes(fsys sftpFS) bool {
	var files [][]byte
	for _, name := range networkdConf {
		if b, err := c.readFile(fsys, name, smallFileLimit, ""); err == nil {
			files = append(files, b)
			break
		}
	}
	byName := map[string]string{}
	for i := len(networkdDropIns) - 1; i >= 0; i-- {
		entries, err := c.readDir(fsys, networkdDropIns[i])
		if err != nil {
			continue
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".conf") {
				byName[e.Name()] = path.Join(networkdDropIns[i], e.Name())
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if b, err := c.readFile(fsys, byName[n], smallFileLimit, ""); err == nil {
			files = append(files, b)
		}
	}
	return ManageForeignRoutes(files...)
}

// ManageForeignRoutes returns networkd's ManageForeignRoutes= after
// reading files in order: the last setting in a [Network] section wins;
// the default is on.
func ManageForeignRoutes(files ...[]byte) bool {
	on := true
	for _, f := range files {
		section := ""
		sc := bufio.NewScanner(bytes.NewReader(f))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == "" || line[0] == '#' || line[0] == ';':
			case line[0] == '[':
				section = strings.Trim(line, "[]")
			case section == "Network":
				key, value, ok := strings.Cut(line, "=")
				if ok && strings.TrimSpace(key) == "ManageForeignRoutes" {
					if b, ok := parseBool(strings.TrimSpace(value)); ok {
						on = b
					}
				}
			}
		}
	}
	return on
}

// parseBool reads a systemd boolean.
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

func exists(fsys sftpFS, name string) bool {
	_, err := fsys.Lstat(name)
	return err == nil
}

func isDir(fsys sftpFS, name string) bool {
	fi, err := fsys.Stat(name)
	return err == nil && fi.IsDir()
}
