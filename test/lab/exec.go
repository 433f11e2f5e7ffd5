package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	_, err := l.Exec(ctx, from.NS, "ping", "-c", "1", "-W", "2", "-I", from.PodIP.String(), to.PodIP.String())
	return err
}

// Result is what a routepush run printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// Routepush runs the routepush binary in the bastion namespace with the
// lab's config (key and known_hosts) and the given arguments.
func (l *Lab) Routepush(ctx context.Context, bin string, args ...string) (Result, error) {
	full := append([]string{"netns", "exec", l.Bastion, bin, "--config", l.ConfigPath()}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(cmd.Environ(), "SSH_AUTH_SOCK=")
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
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
				ok[i][j] = l.Ping(ctx, from, to) == nil
			}()
		}
	}
	wg.Wait()
	return ok
}
