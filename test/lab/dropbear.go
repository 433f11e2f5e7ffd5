package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// dropbearSFTP is the SFTP server Dropbear execs for the "sftp" subsystem,
// compiled in. Debian's dropbear-bin does not ship it: the lab needs it
// linked to OpenSSH's (scripts/install-deps.sh does).
const dropbearSFTP = "/usr/lib/sftp-server"

// noSFTPMounts hides every SFTP server from a node: /dev/null is no
// program, so running it fails with "Permission denied" (exit 126), as a
// node without one fails. A bind mount follows a symbolic link, so a
// /usr/lib/sftp-server that links to OpenSSH's hides both.
const noSFTPMounts = `for f in /usr/lib/sftp-server /usr/lib/openssh/sftp-server; do
	[ ! -e "$f" ] || mount --bind /dev/null "$f"
done
`

// dropbearStart starts Dropbear in the foreground with the node's mounts
// ($1 the node's folder, then Dropbear's options).
const dropbearStart = nodeMounts + `[ ! -f "$1/no-sftp" ] || { ` + noSFTPMounts + `}
shift
exec /usr/sbin/dropbear "$@"
`

// dropbearHostKey is the node's Dropbear host key, made by dropbearkey.
func dropbearHostKey(n *Node) string { return filepath.Join(n.Dir, "dropbear_ed25519_host_key") }

// setUpDropbear gives a node what Dropbear needs instead of sshd's files:
// a host key of Dropbear's own format (the lab's known_hosts gets its
// public half), root's authorized_keys in the node's /root/.ssh (Dropbear
// reads only ~/.ssh/authorized_keys, and wants ~/.ssh 0700 and the file
// 0600), and with noSFTP a mark that hides its SFTP server.
func (l *Lab) setUpDropbear(ctx context.Context, n *Node, noSFTP bool) error {
	if l.SudoUser != "" {
		return errors.New("lab: Dropbear nodes log in as root: not with SudoUser")
	}
	if _, err := os.Stat(dropbearSFTP); err != nil && !noSFTP {
		return fmt.Errorf("lab: %s: Dropbear's SFTP server is missing: link it to OpenSSH's (ln -s openssh/sftp-server %s; scripts/install-deps.sh does)", n.Name, dropbearSFTP)
	}
	key := dropbearHostKey(n)
	if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.CommandContext(ctx, "dropbearkey", "-t", "ed25519", "-f", key).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: %s: dropbearkey -t ed25519: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
		}
	}
	out, err := exec.CommandContext(ctx, "dropbearkey", "-y", "-f", key).Output()
	if err != nil {
		return fmt.Errorf("lab: %s: dropbearkey -y: %w", n.Name, err)
	}
	n.HostKey = nil
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ssh-ed25519 ") {
			if n.HostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(line)); err != nil {
				return fmt.Errorf("lab: %s: dropbearkey -y: %w", n.Name, err)
			}
		}
	}
	if n.HostKey == nil {
		return fmt.Errorf("lab: %s: dropbearkey -y printed no ssh-ed25519 key: %q", n.Name, out)
	}
	if err := l.writeDropbearKeys(n); err != nil {
		return err
	}
	mark := filepath.Join(n.Dir, "no-sftp")
	if noSFTP {
		err = os.WriteFile(mark, nil, 0o644)
	} else if err = os.Remove(mark); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	n.Dropbear, n.NoSFTP = true, noSFTP
	return err
}

// writeDropbearKeys copies the lab's authorized_keys to the node's
// /root/.ssh, as Dropbear wants it.
func (l *Lab) writeDropbearKeys(n *Node) error {
	keys, err := os.ReadFile(filepath.Join(l.Dir, "authorized_keys"))
	if err != nil {
		return err
	}
	dir := filepath.Join(n.Dir, "root-home", ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "authorized_keys"), keys, 0o600)
}

// startDropbear starts the node's Dropbear on its address, port 22, in
// the node's namespace with its mounts, and waits for its pid file, which
// Dropbear writes once it listens. -F keeps it in the foreground (its
// log, -E, goes to dropbear.log), -s refuses passwords; extra are more
// Dropbear options. Down and StopSSHD kill it with the namespace's other
// processes.
func (l *Lab) startDropbear(ctx context.Context, n *Node, extra ...string) error {
	log, err := os.OpenFile(filepath.Join(n.Dir, "dropbear.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	pidFile := filepath.Join(n.Dir, "dropbear.pid")
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	args := []string{"netns", "exec", n.NS, "sh", "-c", dropbearStart, "sh", n.Dir,
		"-F", "-E", "-s", "-p", n.Addr.String() + ":22", "-r", dropbearHostKey(n), "-P", pidFile}
	// Not CommandContext: Dropbear outlives the call that starts it.
	cmd := exec.Command("ip", append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: %s: starting dropbear: %w", n.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaped when killed
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("lab: %s: dropbear exited before it listened (%v); see %s", n.Name, err, log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: %s: dropbear wrote no pid file in 30 s; see %s", n.Name, log.Name())
		}
	}
}

// UseDropbear switches a running node from sshd to Dropbear (without an
// SFTP server with noSFTP) and puts its new host key in the lab's
// known_hosts.
func (l *Lab) UseDropbear(ctx context.Context, n *Node, noSFTP bool) error {
	if err := l.StopSSHD(ctx, n); err != nil {
		return err
	}
	if err := l.setUpDropbear(ctx, n, noSFTP); err != nil {
		return err
	}
	if err := l.writeKnownHosts(); err != nil {
		return err
	}
	return l.StartSSHD(ctx, n)
}
