// Command gofloor is the bench's two Go floors (issue 21): the least an
// SSH tool built on golang.org/x/crypto/ssh does on every node, against
// which routepush's own runs are measured, with no OpenSSH client process
// per node to flatter routepush.
//
//	gofloor -mode true   one connection per node running `true`
//	gofloor -mode apply  one connection per node feeding the node's batch
//	                     (-batch-dir/<address>) to `ip -batch -`, then
//	                     printing its table once (`ip -d -N -json route
//	                     show`), read to its end
//
// Nodes are the addresses in -hosts, one a line, as root with -identity
// against -known-hosts, -concurrency at a time. It exits 1 if any node
// fails, naming it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"
)

func main() {
	mode := flag.String("mode", "true", "true, or apply")
	hostsFile := flag.String("hosts", "", "node addresses, one a line")
	identity := flag.String("identity", "", "private key file")
	knownHosts := flag.String("known-hosts", "", "known_hosts file")
	batchDir := flag.String("batch-dir", "", "with -mode apply: each node's batch, named by its address")
	concurrency := flag.Int("concurrency", 50, "nodes at once")
	timeout := flag.Duration("timeout", 2*time.Minute, "per node")
	flag.Parse()
	if err := run(*mode, *hostsFile, *identity, *knownHosts, *batchDir, *concurrency, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(1)
	}
}

func run(mode, hostsFile, identity, knownHostsFile, batchDir string, concurrency int, timeout time.Duration) error {
	if mode != "true" && mode != "apply" {
		return fmt.Errorf("-mode %q: true or apply", mode)
	}
	hosts, err := readLines(hostsFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(identity)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", identity, err)
	}
	hostKeys, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return err
	}
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 30 * time.Second}
	var g errgroup.Group
	g.SetLimit(concurrency)
	var failed atomic.Int32
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := node(ctx, cfg, h, mode, batchDir); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h, err)
				failed.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d of %d nodes failed: %w", failed.Load(), len(hosts), errors.Join(errs...))
	}
	return nil
}

// node does the floor's work on one node over one connection.
func node(ctx context.Context, cfg *ssh.ClientConfig, addr, mode, batchDir string) error {
	hostPort := net.JoinHostPort(addr, "22")
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, hostPort, cfg)
	if err != nil {
		return err
	}
	client := ssh.NewClient(conn, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	if mode == "true" {
		return sess.Run("true")
	}
	batch, err := os.Open(filepath.Join(batchDir, addr))
	if err != nil {
		return err
	}
	defer batch.Close()
	sess.Stdin = batch
	out, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sess.Start("ip -batch - && ip -d -N -json route show"); err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, out)
	if err != nil {
		return err
	}
	if err := sess.Wait(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no table printed")
	}
	return nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, s.Err()
}
