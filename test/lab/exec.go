package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// Exec runs a command inside a namespace and returns its stdout.
func (l *Lab) Exec(ctx context.Context, ns string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("lab: in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Routes returns what `ip route show` and `ip -6 route show` print on a
// node: the text an operator compares before and after a run.
func (l *Lab) Routes(ctx context.Context, n *Node) (string, error) {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.CommandContext(ctx, "ip", "-n", n.NS, fam, "route", "show").Output()
		if err != nil {
			return "", fmt.Errorf("lab: ip -n %s %s route show: %w", n.NS, fam, err)
		}
		b.Write(out)
	}
	return b.String(), nil
}

// AllRoutes returns Routes of every node, by node name.
func (l *Lab) AllRoutes(ctx context.Context) (map[string]string, error) {
	m := make(map[string]string, len(l.Nodes))
	for _, n := range l.Nodes {
		r, err := l.Routes(ctx, n)
		if err != nil {
			return nil, err
		}
		m[n.Name] = r
	}
	return m, nil
}

// Ping sends one ping from one node's pod IP to another's.
func (l *Lab) Ping(ctx context.Context, from, to *Node) error {
	return l.PingFrom(ctx, from, from.PodIP, to.PodIP)
}

// PingFrom sends one ping from a node, from address src to dst.
func (l *Lab) PingFrom(ctx context.Context, from *Node, src, dst netip.Addr) error {
	_, err := l.Exec(ctx, from.NS, "ping", "-c", "1", "-W", "2", "-I", src.String(), dst.String())
	return err
}

// Result is what a routepush run printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
	// MaxRSS is the most memory the run's process held, in bytes
	// (getrusage's ru_maxrss, through wait4).
	MaxRSS int64
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// Routepush runs the routepush binary in the bastion namespace with the
// lab's config (key and known_hosts) and the given arguments.
func (l *Lab) Routepush(ctx context.Context, bin string, args ...string) (Result, error) {
	return l.RoutepushWith(ctx, RunOptions{}, bin, args...)
}

// RunOptions change the bastion routepush runs on.
type RunOptions struct {
	// Env is added to routepush's environment.
	Env []string
	// Mounts bind folders over paths, for this run only (the bastion's
	// mount namespace is its own): e.g. a service account's token over
	// /var/run/secrets/kubernetes.io/serviceaccount.
	Mounts map[string]string
	// Cmd, if set, may change the command before it starts: its stdin, or
	// its controlling terminal.
	Cmd func(*exec.Cmd)
}

// RoutepushWith is Routepush on a bastion changed by o.
func (l *Lab) RoutepushWith(ctx context.Context, o RunOptions, bin string, args ...string) (Result, error) {
	// ip netns exec gives the shell a mount namespace of its own, so the
	// mounts vanish with it.
	script := "set -e\n"
	for src, dst := range o.Mounts {
		script += fmt.Sprintf("mkdir -p %q && mount --bind %q %q\n", dst, src, dst)
	}
	script += `exec "$@"`
	full := append([]string{"netns", "exec", l.Bastion, "sh", "-c", script, "sh", bin, "--config", l.ConfigPath()}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No agent and no ~/.ssh of the host's: a test adds what it uses.
	cmd.Env = append(append(cmd.Environ(), "SSH_AUTH_SOCK=", "HOME="+l.HomeDir()), o.Env...)
	if o.Cmd != nil {
		o.Cmd(cmd)
	}
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.MaxRSS = int64(ru.Maxrss) << 10 // KiB on Linux
		}
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		return res, err
	}
	return res, nil
}

// PingMatrix pings every node's pod IP from every other node's pod IP, all
// at once. ok[i][j] reports whether node i reached node j (false for i == j).
func (l *Lab) PingMatrix(ctx context.Context) (ok [][]bool) {
	return l.pingMatrix(ctx, func(n *Node) netip.Addr { return n.PodIP })
}

// PingMatrix6 is PingMatrix over the IPv6 pod IPs of a DualStack lab.
func (l *Lab) PingMatrix6(ctx context.Context) (ok [][]bool) {
	return l.pingMatrix(ctx, func(n *Node) netip.Addr { return n.PodIP6 })
}

func (l *Lab) pingMatrix(ctx context.Context, podIP func(*Node) netip.Addr) (ok [][]bool) {
	ok = make([][]bool, len(l.Nodes))
	var wg sync.WaitGroup
	for i, from := range l.Nodes {
		ok[i] = make([]bool, len(l.Nodes))
		for j, to := range l.Nodes {
			if i == j {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok[i][j] = l.PingFrom(ctx, from, podIP(from), podIP(to)) == nil
			}()
		}
	}
	wg.Wait()
	return ok
}
